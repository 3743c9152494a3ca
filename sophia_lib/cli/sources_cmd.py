"""``sophia sources``: data-source health from the app DB. Parses and calls :mod:`sophia_lib.sync` only."""

from __future__ import annotations

import json
from datetime import timedelta

import typer

from sophia_lib.config import load_config
from sophia_lib.sync import SourceHealth, source_health

app = typer.Typer(help="Data sources: health of their syncs.", no_args_is_help=True)

STATE_COLOURS = {"ok": "green", "running": "cyan", "failing": "red", "stale": "yellow", "never": "yellow",
                 "disabled": None}


def _lag(lag: timedelta | None) -> str:
    if lag is None:
        return "-"
    s = int(lag.total_seconds())
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= span:
            return f"{s // span}{unit}"
    return f"{max(s, 0)}s"


def _row(h: SourceHealth) -> tuple[str, ...]:
    last = h.last_success_at.isoformat(sep=" ", timespec="seconds") if h.last_success_at else "never"
    error = (h.last_error or "").splitlines()[0][:80] if h.last_error else ""
    return (h.source, h.state, last, _lag(h.lag), str(h.consecutive_failures), str(h.rows_last_run), error)


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Per source: state, last success, lag, consecutive failures, rows changed by the last run, last error."""
    health = source_health(load_config())
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in health], indent=2))
        return
    if not health:
        typer.echo("no sources configured and no syncs recorded; add sources under `sources:` in sophia.yaml")
        return
    header = ("SOURCE", "STATE", "LAST SUCCESS (UTC)", "LAG", "FAILURES", "ROWS", "LAST ERROR")
    rows = [header] + [_row(h) for h in health]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        colour = None if i == 0 else STATE_COLOURS.get(health[i - 1].state)
        typer.secho(line, fg=colour, bold=i == 0)
