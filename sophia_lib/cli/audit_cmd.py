"""``sophia audit``: check the audit log's hash chain and export it. Parses and calls sophia_lib only."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="The append-only, hash-chained audit log (every read through the query door).",
                  no_args_is_help=True)


def _log():
    from sophia_lib.appdb import open_app_db
    from sophia_lib.audit import AuditLog

    return AuditLog(open_app_db(load_config()))


@app.command("verify")
def verify() -> None:
    """Walk the whole chain; exit 1 naming the first record that was edited, deleted or inserted."""
    from sophia_lib.audit import verify as check

    log = _log()
    try:
        result = check(log)
    finally:
        log.app_db.close()
    if not result.ok:
        typer.secho(f"audit log TAMPERED at record {result.bad_seq}: {result.problem} "
                    f"({result.checked} record(s) before it check out)", err=True, fg="red")
        raise typer.Exit(1)
    typer.secho(f"audit log intact: {result.checked} record(s), chain verified through record {result.last_seq}",
                fg="green")


@app.command("export")
def export(
    fmt: str = typer.Option("jsonl", "--format", "-f", help="csv or jsonl."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
    since: int = typer.Option(0, "--since", help="Only records after this sequence number."),
) -> None:
    """Write the audit log (every field, hashes included, so an auditor can re-verify the chain)."""
    from sophia_lib.audit import export as write

    if fmt not in ("csv", "jsonl"):
        typer.secho(f"error: --format {fmt!r} is not one of csv, jsonl.", err=True, fg="red")
        raise typer.Exit(2)
    log = _log()
    try:
        if output is None:
            n = write(log, sys.stdout, fmt, since)  # type: ignore[arg-type]
        else:
            with output.open("w", newline="") as out:
                n = write(log, out, fmt, since)  # type: ignore[arg-type]
    finally:
        log.app_db.close()
    typer.secho(f"{n} record(s) exported", err=True, fg="green")
