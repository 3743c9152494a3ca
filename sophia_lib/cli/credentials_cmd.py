"""``sophia credentials``: store, list, rotate and delete secrets. Parses and calls sophia_lib only.

A value is never a command-line argument (anyone on the machine can read those with ``ps``): it
comes from a hidden prompt, from stdin (``--value-stdin``) or from a named environment variable
(``--from-env VAR``). Values are never printed. Exit codes: 2 bad usage, 1 a runtime failure
(the top-level ``sophia`` wrapper prints library errors without a traceback).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from sophia_lib.errors import SecretError
from sophia_lib.secrets import SecretStore, open_store
from sophia_lib.secrets.backends import check_name

app = typer.Typer(help="Store, list, rotate and delete credentials (values are never shown).", no_args_is_help=True)

EXIT_USAGE = 2
BACKEND_HELP = "Secrets backend: file, vault or env (default: SOPHIA_SECRETS_BACKEND, else file)."
STDIN_HELP = "Read the value from stdin (one trailing newline is dropped), e.g. `pass show x | sophia …`."
FROM_ENV_HELP = "Take the value from this environment variable (its name, not the value)."


def _usage(message: str, fix: str) -> NoReturn:
    typer.secho(f"error: {message}\n  fix: {fix}", err=True, fg="red")
    raise typer.Exit(EXIT_USAGE)


def _interactive() -> bool:
    """Whether a person can answer a prompt (a separate function so tests can say yes)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _name(name: str) -> str:
    try:
        return check_name(name)
    except SecretError as exc:
        _usage(exc.message, exc.fix or "")


def _value(name: str, value_stdin: bool, from_env: str | None, command: str, stray: list[str] | None) -> str:
    """The new value, from exactly one of: --from-env, --value-stdin, a hidden prompt."""
    if stray:  # a value typed as an argument: refuse it without echoing it back
        _usage("a secret value is never taken as a command-line argument (it shows in `ps` and in shell "
               "history); nothing was stored.",
               f"sophia credentials {command} {name} (hidden prompt), --value-stdin or --from-env VAR; "
               "rotate that value if others can see this machine's history")
    if value_stdin and from_env:
        _usage("--value-stdin and --from-env both give the value; use one.", f"sophia credentials {command} {name} "
               "--value-stdin < file   or   --from-env VAR")
    if from_env:
        value = os.environ.get(from_env, "")
        if not value:
            _usage(f"--from-env {from_env}: that environment variable is not set or is empty.",
                   f"export {from_env}=… first, or use --value-stdin")
        return value
    if value_stdin:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
        if not value:
            _usage("--value-stdin: stdin was empty.", f"pipe the value in: … | sophia credentials {command} {name} "
                   "--value-stdin")
        return value
    if not _interactive():
        _usage("no value given, and there is no terminal to prompt on.",
               f"pipe it in with --value-stdin, or use --from-env VAR (sophia credentials {command} {name} --help)")
    return typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)


STRAY_VALUE = typer.Argument(None, hidden=True, show_default=False, help="Refused: values never go in arguments.")


def _store(backend: str | None) -> SecretStore:
    return open_store(backend=backend)


@app.command("set")
def set_(
    name: str = typer.Argument(..., help="Secret name, as written in sophia.yaml: {secret: NAME}."),
    value_stdin: bool = typer.Option(False, "--value-stdin", help=STDIN_HELP),
    from_env: str | None = typer.Option(None, "--from-env", metavar="VAR", help=FROM_ENV_HELP),
    backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP),
    stray: list[str] | None = STRAY_VALUE,
) -> None:
    """Store a secret (a new version when it exists). Prompts for the value, hidden, unless told otherwise."""
    name = _name(name)
    value = _value(name, value_stdin, from_env, "set", stray)
    store = _store(backend)
    info = store.set(name, value)
    typer.secho(f"stored {name} in {store.backend_name} store {store.location()} (version {info['version']})",
                fg="green")


@app.command("list")
def list_(backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP)) -> None:
    """Secrets the store can see: name, backend, last update, version. Never the values."""
    store = _store(backend)
    rows = store.describe()
    if not rows:
        typer.echo(f"no credentials in {store.location()} (nor in SOPHIA_SECRET_* variables); "
                   "add one with `sophia credentials set NAME`")
        return
    table = [("NAME", "BACKEND", "UPDATED", "VERSION")] + [
        (r["name"], r["backend"], r["updated_at"] or "-", "-" if r["version"] is None else str(r["version"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@app.command("rotate")
def rotate(
    name: str = typer.Argument(..., help="Name of a stored secret."),
    value_stdin: bool = typer.Option(False, "--value-stdin", help=STDIN_HELP),
    from_env: str | None = typer.Option(None, "--from-env", metavar="VAR", help=FROM_ENV_HELP),
    backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP),
    stray: list[str] | None = STRAY_VALUE,
) -> None:
    """Replace a stored secret's value with a new one (its version goes up by one)."""
    name = _name(name)
    value = _value(name, value_stdin, from_env, "rotate", stray)
    store = _store(backend)
    info = store.rotate(name, value)
    typer.secho(f"rotated {name} in {store.backend_name} store (now version {info['version']})", fg="green")


@app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Name of a stored secret."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP),
) -> None:
    """Delete a secret (all its versions) from the store."""
    name = _name(name)
    store = _store(backend)
    if not yes:
        if not _interactive():
            _usage(f"deleting {name} needs confirmation, and there is no terminal to ask on.",
                   f"sophia credentials delete {name} --yes")
        typer.confirm(f"delete secret {name} from {store.location()}?", abort=True)
    store.delete(name)
    typer.secho(f"deleted {name} from {store.backend_name} store {store.location()}", fg="green")
