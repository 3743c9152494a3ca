"""``sophia credentials``: values in only through prompt/stdin/env, never out; exit codes; messages.

Most tests drive the Typer app with CliRunner. ``run_sophia`` goes through the top-level wrapper
(``sophia_lib.cli.app``) with this sub-app mounted, to check the exit codes library errors get; the
real console script is exercised once ``sophia credentials`` is registered there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cryptography.fernet import Fernet
from typer.testing import CliRunner

import sophia_lib.cli as sophia_cli
from sophia_lib.cli import credentials_cmd
from sophia_lib.secrets import open_store

SOPHIA = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sophia"
VALUE = "pa55-Word-7c6b5a"
runner = CliRunner()


def cli(*args: str, input: str | None = None):  # noqa: A002 - CliRunner's name
    return runner.invoke(credentials_cmd.app, list(args), input=input)


def run_sophia(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
               stdin: str = "") -> tuple[int, str, str]:
    """Run ``sophia credentials ARGS`` through the real top-level wrapper and its error handling."""
    import io

    root = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    root.add_typer(credentials_cmd.app, name="credentials")
    monkeypatch.setattr(sophia_cli, "cli", root)
    monkeypatch.setattr(sys, "argv", ["sophia", "credentials", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        sophia_cli.app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", [[], ["set"], ["list"], ["rotate"], ["delete"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_set_list_rotate_delete_never_show_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = cli("set", "HUBSPOT_TOKEN", "--value-stdin", input=VALUE + "\n")
    assert stored.exit_code == 0, stored.output
    assert "stored HUBSPOT_TOKEN in file store" in stored.output and "(version 1)" in stored.output
    assert open_store().get("HUBSPOT_TOKEN") == VALUE  # one trailing newline dropped, nothing else

    monkeypatch.setenv("NEW_HUBSPOT_TOKEN", VALUE + "-new")
    rotated = cli("rotate", "HUBSPOT_TOKEN", "--from-env", "NEW_HUBSPOT_TOKEN")
    assert rotated.exit_code == 0 and "now version 2" in rotated.output
    assert open_store().get("HUBSPOT_TOKEN") == VALUE + "-new"

    monkeypatch.setenv("SOPHIA_SECRET_CI_ONLY", "ci-value-1234")
    listed = cli("list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split() == ["NAME", "BACKEND", "UPDATED", "VERSION"]
    assert lines[1].split()[0:2] == ["HUBSPOT_TOKEN", "file"] and lines[1].split()[-1] == "2"
    assert lines[2].split() == ["CI_ONLY", "env", "-", "-"]

    deleted = cli("delete", "HUBSPOT_TOKEN", "--yes")
    assert deleted.exit_code == 0 and "deleted HUBSPOT_TOKEN" in deleted.output
    assert open_store().names() == []
    for result in (stored, rotated, listed, deleted):
        assert VALUE not in result.output and "ci-value-1234" not in result.output


def test_hidden_prompt_when_interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials_cmd, "_interactive", lambda: True)
    result = cli("set", "GONG_KEY", input=f"{VALUE}\n{VALUE}\n")
    assert result.exit_code == 0, result.output
    assert VALUE not in result.output  # hidden input is not echoed
    assert open_store().get("GONG_KEY") == VALUE
    mismatch = cli("rotate", "GONG_KEY", input=f"{VALUE}-a\n{VALUE}-b\n{VALUE}-c\n{VALUE}-c\n")
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output  # asked again, then accepted
    assert open_store().get("GONG_KEY") == VALUE + "-c"


def test_empty_store_list_says_how_to_add() -> None:
    result = cli("list")
    assert result.exit_code == 0 and "sophia credentials set NAME" in result.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["set", "A_KEY"], None, "no terminal to prompt on"),
        (["set", "A_KEY", "--value-stdin"], "", "stdin was empty"),
        (["set", "A_KEY", "--value-stdin", "--from-env", "X"], VALUE, "use one"),
        (["set", "A_KEY", "--from-env", "SURELY_NOT_SET_VAR"], None, "SURELY_NOT_SET_VAR"),
        (["set", "bad-name", "--value-stdin"], VALUE, "not a valid secret name"),
        (["set", "A_KEY", VALUE], None, "never taken as a command-line argument"),
        (["rotate", "A_KEY", VALUE, "--value-stdin"], VALUE, "never taken as a command-line argument"),
        (["delete", "A_KEY"], None, "sophia credentials delete A_KEY --yes"),
    ],
)
def test_usage_errors_exit_2(args: list[str], stdin: str | None, message: str) -> None:
    result = cli(*args, input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert VALUE not in result.output  # a value typed as an argument is not echoed back either
    assert open_store().names() == []


def test_runtime_errors_exit_1_and_usage_errors_2_through_the_sophia_wrapper(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_sophia(monkeypatch, capsys, "rotate", "MISSING", "--value-stdin", stdin=VALUE)
    assert code == 1 and "cannot rotate secret 'MISSING'" in err and "sophia credentials set MISSING" in err
    assert "Traceback" not in err and VALUE not in out + err

    code, out, err = run_sophia(monkeypatch, capsys, "delete", "MISSING", "--yes")
    assert code == 1 and "not in" in err

    code, out, err = run_sophia(monkeypatch, capsys, "list", "--backend", "fiel")
    assert code == 2 and "did you mean 'file'" in err

    code, out, err = run_sophia(monkeypatch, capsys, "set", "A_KEY", "--value-stdin", stdin=VALUE)
    assert code == 0 and "version 1" in out
    monkeypatch.setenv("SOPHIA_SECRETS_KEY", Fernet.generate_key().decode())  # not the key used before
    code, out, err = run_sophia(monkeypatch, capsys, "list")
    assert code == 1 and "encrypted with another key" in err and VALUE not in out + err


def test_env_backend_set_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_sophia(monkeypatch, capsys, "set", "A_KEY", "--backend", "env", "--value-stdin", stdin=VALUE)
    assert code == 1 and "read-only" in err and "export SOPHIA_SECRET_A_KEY=" in err and VALUE not in err


def _mounted() -> bool:
    return any(group.name == "credentials" for group in sophia_cli.cli.registered_groups)


@pytest.mark.skipif(not _mounted(), reason="`sophia credentials` is not registered in sophia_lib/cli yet")
def test_real_console_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPHIA_")} | {"SOPHIA_VAR_DIR": str(tmp_path / "v")}

    def sophia(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SOPHIA), "credentials", *args], input=stdin, capture_output=True, text=True,
                              timeout=60, env=env)

    assert sophia("set", "A_KEY", "--value-stdin", stdin=VALUE).returncode == 0
    listed = sophia("list")
    assert listed.returncode == 0 and "A_KEY" in listed.stdout and VALUE not in listed.stdout
    missing = sophia("rotate", "NOPE", "--value-stdin", stdin=VALUE)
    assert missing.returncode == 1 and "sophia credentials set NOPE" in missing.stderr
    assert sophia("delete", "A_KEY").returncode == 2  # no terminal, no --yes
    assert sophia("set", "A_KEY", "--value-stdin", "--from-env", "X", stdin=VALUE).returncode == 2
