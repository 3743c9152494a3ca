"""sophia doctor: the checks as a library, and the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sophia_lib import doctor
from sophia_lib.appdb import head_revision, open_app_db
from sophia_lib.config import load_config
from sophia_lib.doctor import Check, exit_code, run_checks
from tests.support.servers import free_port

SOPHIA = Path(sys.executable).parent / "sophia"
RUNTIME = ("python", "sophia_lib", "config", "var_dir", "warehouse", "app database")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_exit_code_fails_only_on_missing() -> None:
    ok, warn, missing = Check("a", "ok", ""), Check("b", "warn", "", "fix b"), Check("c", "missing", "", "fix c")
    assert exit_code([ok, warn]) == 0
    assert exit_code([ok, warn, missing]) == 1


def test_default_config_is_ready_and_every_problem_has_a_fix() -> None:
    checks = run_checks()
    names = by_name(checks)
    for name in RUNTIME:
        assert names[name].status == "ok", names[name]
    for name in ("jupyterhub", "configurable-http-proxy", "gpu (cuDF)", "postgresql server (tests)",
                 "chromium (tests)", "playwright (tests)"):
        assert name in names
    assert all(c.fix for c in checks if c.status != "ok"), [c for c in checks if c.status != "ok" and not c.fix]
    assert not (Path.cwd() / "var").exists(), "doctor must not create anything"


def test_invalid_config_is_missing_with_the_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "sophia.yaml"
    bad.write_text("warehouse:\n  urll: duckdb:///x\n")
    checks = run_checks(bad)
    names = by_name(checks)
    assert names["config"].status == "missing" and "warehouse.urll" in names["config"].detail
    assert names["warehouse"].status == "missing" and "sophia config check" in names["warehouse"].fix
    assert exit_code(checks) == 1


def test_unwritable_var_dir_is_missing(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "sophia.yaml"
    config.write_text(f"var_dir: {blocker / 'var'}\n")
    checks = by_name(run_checks(config))
    assert checks["var_dir"].status == "missing" and "SOPHIA_VAR_DIR" in checks["var_dir"].fix
    assert checks["app database"].status == "missing"


def test_unreachable_postgres_warehouse_names_host_port_and_fix(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "sophia.yaml"
    config.write_text(f"warehouse:\n  url: postgresql+psycopg://sophia@127.0.0.1:{port}/wh\n")
    check = by_name(run_checks(config))["warehouse"]
    assert check.status == "missing"
    assert f"127.0.0.1:{port}" in check.detail and "SOPHIA_WAREHOUSE__URL" in check.fix


@pytest.mark.postgres
def test_reachable_postgres_warehouse_and_app_db(postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "sophia.yaml"
    config.write_text(f"warehouse:\n  url: '{postgres_url}'\napp_db:\n  url: '{postgres_url}'\n")
    checks = by_name(run_checks(config))
    assert checks["warehouse"].status == "ok" and "PostgreSQL" in checks["warehouse"].detail
    assert checks["app database"].status == "ok" and "created on first use" in checks["app database"].detail
    open_app_db(load_config(config)).close()
    assert f"schema at {head_revision()}" in by_name(run_checks(config))["app database"].detail


def test_gpu_absent_is_only_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_importable", lambda module: (False, "not installed"))
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    check = doctor.check_gpu()
    assert check.status == "warn" and "GPU present" in check.detail
    assert check.fix == "on a CUDA machine: pip install 'sophia[gpu]'"
    assert doctor.check_proxy().status == "missing"


def test_missing_postgres_binaries_names_apt_get(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(doctor, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    check = doctor.check_postgres_binaries()
    assert (check.status, check.fix) == ("warn", "apt-get install -y postgresql")


def _run_cli(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([str(SOPHIA), "doctor"], capture_output=True, text=True, env={**clean, **env},
                          timeout=120)


def test_console_script_prints_every_check_and_matches_the_library() -> None:
    expected = run_checks()
    result = _run_cli()
    assert result.returncode == exit_code(expected), result.stdout + result.stderr
    for check in expected:
        assert check.name in result.stdout
        if check.fix:
            assert check.fix in result.stdout, f"fix for {check.name} not printed as is"
    assert not (Path.cwd() / "var").exists()


def test_console_script_exits_1_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("app_db: [not, a, mapping]\n")
    result = _run_cli(SOPHIA_CONFIG=str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missing" in result.stdout and "sophia config check" in result.stdout
