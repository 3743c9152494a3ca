"""The result cache (memory LRU by bytes; Redis when a server exists) and `sophia query sql`."""

from __future__ import annotations

import subprocess
import time

import pytest
from typer.testing import CliRunner

from sophia_lib.cli import cli
from sophia_lib.query.cache import MemoryCache, RedisCache, cache_key
from sophia_lib.sandbox.background import free_port
from tests.query.conftest import QueryEnv
from tests.support.servers import require_binary


def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = MemoryCache(max_bytes=1000)
    for name in "abcd":
        cache.put(name, b"x" * 200)
    assert cache.get("a") == b"x" * 200  # a is now the most recent
    cache.put("e", b"y" * 240)
    assert cache.get("b") is None and cache.get("a") is not None and cache.size <= 1000
    cache.put("huge", b"z" * 600)  # over a quarter of the cache: not kept
    assert cache.get("huge") is None


def test_cache_key_separates_snapshot_scope_query_and_params() -> None:
    base = cache_key("s1", "analyst|", "select 1", {"a": 1})
    assert len({base, cache_key("s2", "analyst|", "select 1", {"a": 1}),
                cache_key("s1", "analyst|region=emea", "select 1", {"a": 1}),
                cache_key("s1", "analyst|", "select 2", {"a": 1}),
                cache_key("s1", "analyst|", "select 1", {"a": 2})}) == 5


def test_redis_cache_round_trip() -> None:
    server = require_binary("redis-server", "the Redis result cache is tested against a real server")
    pytest.importorskip("redis", reason="pip install 'sophia[redis]'")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        cache = RedisCache(f"redis://127.0.0.1:{port}/0")
        for _ in range(50):
            cache.put("k", b"v")
            if cache.get("k") == b"v":
                break
            time.sleep(0.1)
        assert cache.get("k") == b"v" and cache.get("other") is None
    finally:
        proc.terminate()
        proc.wait(10)
    assert cache.get("k") is None  # a cache that is down answers "miss", never an error


def test_cli_query_sql(query_env: QueryEnv, monkeypatch) -> None:
    monkeypatch.setenv("SOPHIA_QUERY_TOKEN", query_env.tokens["ana"])
    runner = CliRunner()
    result = runner.invoke(cli, ["query", "sql", "--url", query_env.url, "-f", "csv",
                                 "select region, count(*) as n from core.accounts where region = :r group by region",
                                 "-p", "r=emea"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "region,n" and result.stdout.splitlines()[1].startswith("emea,")
    refused = runner.invoke(cli, ["query", "sql", "--url", query_env.url, "select * from raw_hubspot.contacts"])
    assert refused.exit_code == 1
    tables = runner.invoke(cli, ["query", "tables", "--url", query_env.url])
    assert "core.people  (masked: email, first_name, full_name, last_name, phone)" in tables.stdout


def test_sophia_query_serve_as_a_hub_service(query_hub, tmp_path) -> None:
    """`sophia query serve` with the variables JupyterHub sets for a managed service: binds the service URL,
    answers under its prefix, says plainly that nothing is published yet, then serves the first snapshot."""
    import os
    import signal
    import sys
    from pathlib import Path

    import httpx
    import pandas as pd

    from sophia_lib.config import SophiaConfig
    from sophia_lib.warehouse import open_warehouse
    from tests.query.conftest import QUERY_TOKEN

    port = free_port()
    env = {**os.environ, "SOPHIA_VAR_DIR": str(tmp_path / "var"), "JUPYTERHUB_API_URL": query_hub.api_url,
           "JUPYTERHUB_API_TOKEN": QUERY_TOKEN, "JUPYTERHUB_SERVICE_NAME": "query",
           "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "JUPYTERHUB_SERVICE_PREFIX": "/services/query/"}
    sophia = str(Path(sys.executable).with_name("sophia"))
    proc = subprocess.Popen([sophia, "query", "serve"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/services/query"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"token {query_hub.token_for('ana')}"}
        early = httpx.post(f"{base}/api/sql", json={"sql": "select * from marts.x"}, headers=headers)
        assert early.status_code == 503 and "no data to serve yet" in early.json()["error"]
        wh = open_warehouse(SophiaConfig(var_dir=tmp_path / "var"))
        wh.publish(lambda b: b.write_table("marts", "x", pd.DataFrame({"n": [1, 2]})))
        wh.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            served = httpx.post(f"{base}/api/sql", json={"sql": "select * from marts.x"}, headers=headers)
            if served.status_code == 200:
                break
            time.sleep(0.3)
        assert served.status_code == 200 and served.headers["x-sophia-rows"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
