"""Real servers for tests: started here, stopped at the end, skipped with a reason when missing.

``SOPHIA_REQUIRE_SERVERS=1`` (set by ``.ci/run``) turns such a skip into a failure,
so CI can never go green by skipping the real-server tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sophia_lib.sandbox.background import free_port

PG_BIN_DIRS = [Path(p) for p in ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
                                 "/usr/lib/postgresql/15/bin")]


def require_binary(name: str, why: str) -> str:
    """Path of a server binary, or skip (fail under SOPHIA_REQUIRE_SERVERS) naming the fix."""
    found = shutil.which(name) or next((str(d / name) for d in PG_BIN_DIRS if (d / name).exists()), None)
    if found:
        return found
    message = f"{name} not found: {why} (install it: apt-get install -y postgresql / chromium / redis-server)"
    if os.environ.get("SOPHIA_REQUIRE_SERVERS") == "1":
        pytest.fail(f"SOPHIA_REQUIRE_SERVERS=1 but {message}")
    pytest.skip(message)


def _demote() -> dict:
    """PostgreSQL refuses to run as root: run it as the 'postgres' (or 'nobody') user then."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid}
    pytest.skip("running as root and no unprivileged user to run PostgreSQL as")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on loopback; yield its SQLAlchemy base URL (no db name)."""
    initdb = require_binary("initdb", "PostgreSQL tests need a real server")
    pg_ctl = str(Path(initdb).parent / "pg_ctl") if (Path(initdb).parent / "pg_ctl").exists() else (
        require_binary("pg_ctl", "PostgreSQL tests need a real server"))
    ids = _demote()
    root = Path(tempfile.mkdtemp(prefix="sophia-pg-"))
    data = root / "data"
    if ids:
        os.chown(root, ids["user"], ids["group"])
        os.chmod(root, 0o755)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run([initdb, "-D", str(data), "-U", "sophia", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, env=env, **ids)
    log = root / "server.log"
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run([pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"],
                   check=True, capture_output=True, env=env, **ids)
    try:
        yield f"postgresql+psycopg://sophia@127.0.0.1:{port}"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env, **ids)
        shutil.rmtree(root, ignore_errors=True)


def create_database(base_url: str, prefix: str = "t") -> str:
    """A fresh empty database on the server; returns its URL."""
    import psycopg

    name = f"{prefix}_{int(time.time() * 1e6) % 10**12}_{os.getpid()}"
    dsn = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"
