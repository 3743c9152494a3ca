"""``sophia warehouse …`` through the real console script: output, exit codes, error messages."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from sophia_lib.warehouse import connect
from tests.support.servers import free_port

SOPHIA = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sophia"
ID = re.compile(r"published snapshot (\d{8}_\d{6}_\d{6})")


def sophia(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOPHIA_")}
    return subprocess.run([str(SOPHIA), "warehouse", *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **env})


@pytest.mark.parametrize("command", [[], ["status"], ["publish"], ["rollback"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = sophia(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_publish_status_rollback_on_duckdb(tmp_path: Path) -> None:
    env = {"SOPHIA_VAR_DIR": str(tmp_path / "var")}
    empty = sophia("status", **env)
    assert empty.returncode == 0, empty.stderr
    assert "no snapshot published yet" in empty.stdout and "sophia warehouse publish" in empty.stdout

    with connect(f"duckdb:///{tmp_path / 'var' / 'warehouse'}").raw_writer() as w:
        w.write_table("raw_hubspot", "contacts", pa.table({"id": [1, 2, 3]}))
    ids = []
    for _ in range(3):
        out = sophia("publish", **env)
        assert out.returncode == 0, out.stderr
        assert "build steps: transforms" in out.stdout  # core and marts build even from a nearly empty raw store
        ids.append(ID.search(out.stdout).group(1))
    dated = sophia("publish", "--as-of", "2025-01-31T12:00:00+00:00", **env)
    assert dated.returncode == 0 and "as of 2025-01-31 12:00:00+00:00" in dated.stdout
    ids.append(ID.search(dated.stdout).group(1))

    status = sophia("status", **env)
    assert status.returncode == 0, status.stderr
    assert all(i in status.stdout for i in ids)
    assert re.search(rf"\*\s+{ids[-1]}", status.stdout)  # current marker on the newest
    assert "raw_hubspot.contacts  3 rows" in status.stdout

    back = sophia("rollback", **env)
    assert back.returncode == 0 and f"current is now snapshot {ids[-2]}" in back.stdout
    to = sophia("rollback", "--to", ids[0], **env)
    assert to.returncode == 0 and ids[0] in to.stdout
    assert re.search(rf"\*\s+{ids[0]}", sophia("status", **env).stdout)

    missing = sophia("rollback", "--to", "nope", **env)
    assert missing.returncode == 1 and "'nope' is not kept" in missing.stderr
    bad_time = sophia("publish", "--as-of", "yesterday", **env)
    assert bad_time.returncode == 2 and "not an ISO time" in bad_time.stderr


def test_corrupted_pointer_says_run_rollback_and_rollback_repairs_it(tmp_path: Path) -> None:
    env = {"SOPHIA_VAR_DIR": str(tmp_path / "var")}
    assert sophia("publish", **env).returncode == 0
    newest = ID.search(sophia("publish", **env).stdout).group(1)
    (tmp_path / "var" / "warehouse" / "CURRENT").write_text("\x00garbage")
    status = sophia("status", **env)
    assert status.returncode == 1
    assert "corrupted" in status.stderr and "sophia warehouse rollback" in status.stderr
    assert newest in status.stdout  # the snapshots are still listed, untouched
    fixed = sophia("rollback", **env)
    assert fixed.returncode == 0 and newest in fixed.stdout
    assert sophia("status", **env).returncode == 0


def test_unwritable_var_dir_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = sophia("publish", SOPHIA_VAR_DIR=str(blocker / "var"))
    assert result.returncode == 1
    assert "is not writable" in result.stderr and "SOPHIA_VAR_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_names_host_and_port(tmp_path: Path) -> None:
    port = free_port()
    result = sophia("status", SOPHIA_WAREHOUSE__URL=f"postgresql+psycopg://sophia@127.0.0.1:{port}/db",
                    SOPHIA_VAR_DIR=str(tmp_path / "var"))
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "SOPHIA_WAREHOUSE__URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_scheme_is_a_config_error(tmp_path: Path) -> None:
    result = sophia("status", SOPHIA_WAREHOUSE__URL="mysql://u@h/db", SOPHIA_VAR_DIR=str(tmp_path / "var"))
    assert result.returncode == 2 and "duckdb, postgresql" in result.stderr


@pytest.mark.postgres
def test_publish_status_rollback_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    env = {"SOPHIA_WAREHOUSE__URL": postgres_url, "SOPHIA_VAR_DIR": str(tmp_path / "var")}
    with connect(postgres_url).raw_writer() as w:
        w.write_table("raw_stripe", "invoices", pa.table({"id": [1, 2]}))
    first = ID.search(sophia("publish", **env).stdout).group(1)
    second = ID.search(sophia("publish", **env).stdout).group(1)
    status = sophia("status", **env)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"\*\s+{second}", status.stdout) and first in status.stdout
    assert "raw_stripe.invoices  2 rows" in status.stdout
    back = sophia("rollback", **env)
    assert back.returncode == 0 and first in back.stdout
    assert re.search(rf"\*\s+{first}", sophia("status", **env).stdout)
