"""``sophia sync``: sync sources into the raw store and print one summary line per source. Parses and
calls :func:`sophia_lib.sync.run_sync` only."""

from __future__ import annotations

import json

import typer

from sophia_lib.config import load_config
from sophia_lib.sync import SourceRunResult, run_sync

STATUS_COLOURS = {"succeeded": "green", "failed": "red", "skipped": "yellow"}


def describe(result: SourceRunResult) -> str:
    """One line: status, duration, rows, pages, retries, quarantined, schema changes; the error on failure."""
    took = f"{result.duration_s:.1f}s" if result.duration_s is not None else "-"
    if result.status != "succeeded":
        fix = f"\n    fix: {result.fix}" if result.fix else ""
        return f"{result.source}: {result.status} ({took}) — {result.error}{fix}"
    parts = [f"+{result.total('rows_inserted')} ~{result.total('rows_updated')} -{result.total('rows_deleted')} rows",
             f"{result.total('pages')} pages", f"{result.retries} retries"]
    if result.total("quarantined"):
        parts.append(f"{result.total('quarantined')} quarantined")
    if result.schema_changes:
        parts.append(f"{len(result.schema_changes)} schema change(s)")
    if result.recovered_loads:
        parts.append(f"{result.recovered_loads} interrupted load(s) completed")
    return f"{result.source}: succeeded ({took}) {', '.join(parts)}"


def sync(
    source: list[str] = typer.Option(None, "--source", "-s",
                                     help="Sync only this source (repeatable); default: every enabled source."),
    full_refresh: bool = typer.Option(False, "--full-refresh",
                                      help="Ignore cursors: re-read everything and rebuild the raw tables."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Progress bars per source (only on a terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of summary lines."),
) -> None:
    """Sync data sources into raw_<source> tables; exits 1 if any source failed."""
    results = run_sync(load_config(), sources=source or None, full_refresh=full_refresh, progress=progress)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))
    elif not results:
        typer.echo("no enabled sources configured; add one under `sources:` in sophia.yaml")
    for result in results if not as_json else []:
        typer.secho(describe(result), fg=STATUS_COLOURS.get(result.status),
                    err=result.status == "failed")
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)
