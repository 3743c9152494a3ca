"""sophia.yaml: valid and invalid cases, each invalid case with the message it must give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sophia_lib.config import load_config, redacted
from sophia_lib.errors import ConfigError

VALID_CONFIGS: list[tuple[str, dict]] = [
    ("", {"warehouse.keep_snapshots": 5}),
    ("warehouse:\n  keep_snapshots: 9\n", {"warehouse.keep_snapshots": 9}),
    ("sandbox:\n  size: small\n  seed: 7\n", {"sandbox.size": "small", "sandbox.seed": 7}),
    ("warehouse:\n  url: postgresql+psycopg://sophia@db:5432/sophia\n  password: {secret: WH_PASSWORD}\n",
     {"warehouse.url": "postgresql+psycopg://sophia@db:5432/sophia"}),
]

INVALID_CONFIGS: list[tuple[str, list[str]]] = [
    ("warehouse:\n  urll: duckdb:///x\n", ["warehouse.urll", "unknown key", "did you mean 'url'"]),
    ("warehuose:\n  url: duckdb:///x\n", ["warehuose", "unknown key", "did you mean 'warehouse'"]),
    ("warehouse:\n  keep_snapshots: many\n", ["warehouse.keep_snapshots = 'many'", "SOPHIA_WAREHOUSE__KEEP_SNAPSHOTS"]),
    ("warehouse:\n  keep_snapshots: 1\n", ["warehouse.keep_snapshots = 1", "greater than or equal to 2"]),
    ("sandbox:\n  size: huge\n", ["sandbox.size = 'huge'", "'small', 'medium' or 'large'"]),
    ("warehouse:\n  url: postgresql+psycopg://sophia:hunter2@db/sophia\n",
     ["warehouse.url", "inline password", "warehouse.password: {secret: NAME}"]),
    ("warehouse:\n  url: mysql://db/x\n", ["unsupported warehouse scheme 'mysql'", "duckdb, postgresql"]),
    ("warehouse:\n  password: hunter2\n", ["warehouse.password = (hidden)", "inline secret value is not allowed"]),
    ("warehouse:\n  password: {secret: 'bad name'}\n", ["warehouse.password.secret", "letters, digits"]),
    ("warehouse: [1, 2]\n", ["warehouse"]),
    ("sources:\n  slak: {}\n", ["sources.slak: unknown name", "did you mean 'slack'"]),
    ("sources:\n  slack:\n    base_url: slack.com/api\n", ["sources.slack.base_url", "http://"]),
    ("sources:\n  slack:\n    credentials:\n      bot_token: xoxb-inline\n",
     ["sources.slack.credentials.bot_token", "inline secret value is not allowed"]),
    ("- just\n- a list\n", ["must be a mapping"]),
    ("warehouse:\n  url: 'unclosed\n", ["not valid YAML", "line"]),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sophia.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), VALID_CONFIGS)
def test_valid_configs(tmp_path: Path, text: str, expected: dict) -> None:
    config = load_config(_write(tmp_path, text))
    for dotted, value in expected.items():
        section, key = dotted.split(".")
        assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize(("text", "fragments"), INVALID_CONFIGS)
def test_invalid_configs_name_key_value_and_fix(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert "hunter2" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_lookup_order_env_file_then_cwd_then_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().var_dir == tmp_path / "var"  # built-in defaults, relative to the cwd
    _write(tmp_path, "warehouse:\n  keep_snapshots: 3\n")
    assert load_config().warehouse.keep_snapshots == 3  # ./sophia.yaml
    other = tmp_path / "etc"
    other.mkdir()
    (other / "custom.yaml").write_text("var_dir: state\nwarehouse:\n  keep_snapshots: 4\n")
    monkeypatch.setenv("SOPHIA_CONFIG", str(other / "custom.yaml"))
    config = load_config()
    assert config.warehouse.keep_snapshots == 4
    assert config.var_dir == other / "state"  # relative paths follow the config file
    assert config.warehouse.url == f"duckdb:///{other / 'state' / 'warehouse'}"
    monkeypatch.setenv("SOPHIA_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="SOPHIA_CONFIG points at .*missing.yaml"):
        load_config()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "warehouse:\n  keep_snapshots: 3\nsandbox:\n  size: small\n")
    monkeypatch.setenv("SOPHIA_WAREHOUSE__KEEP_SNAPSHOTS", "11")
    config = load_config()
    assert config.warehouse.keep_snapshots == 11
    assert config.sandbox.size == "small"  # the rest of the section still comes from the file
    monkeypatch.setenv("SOPHIA_SANDBOX__SIZE", "gigantic")
    with pytest.raises(ConfigError, match="SOPHIA_SANDBOX__SIZE"):
        load_config()


def test_redacted_shows_secret_names_never_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRET_WH_PASSWORD", "s3cr3t-value")
    _write(tmp_path, "warehouse:\n  url: postgresql+psycopg://u@h/db\n  password: {secret: WH_PASSWORD}\n")
    shown = redacted(load_config())
    assert shown["warehouse"]["password"] == "{secret: WH_PASSWORD}"
    assert "s3cr3t-value" not in repr(shown)


def _sophia(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "sophia"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_cli_config_check_ok_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRET_WH_PASSWORD", "s3cr3t-value")
    _write(tmp_path, "warehouse:\n  url: postgresql+psycopg://u@h/db\n  password: {secret: WH_PASSWORD}\n")
    ok = _sophia("config", "check", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "{secret: WH_PASSWORD}" in ok.stdout and "s3cr3t-value" not in ok.stdout + ok.stderr
    assert "config OK" in ok.stdout

    _write(tmp_path, "warehouse:\n  keep_snapshot: 3\n")
    bad = _sophia("config", "check", cwd=tmp_path)
    assert bad.returncode == 2
    assert "warehouse.keep_snapshot: unknown key" in bad.stderr and "did you mean 'keep_snapshots'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_sandbox_feeds_sources_only_in_the_demo_by_default(tmp_path: Path) -> None:
    assert load_config().sandbox.feeds_sources is True  # no sophia.yaml: the demo
    assert load_config(_write(tmp_path, "")).sandbox.feeds_sources is False  # a real config: real vendors
    assert load_config(_write(tmp_path, "sandbox:\n  feeds_sources: true\n")).sandbox.feeds_sources is True
