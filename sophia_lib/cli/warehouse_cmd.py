"""``sophia warehouse``: show, publish and roll back serving snapshots. Parses and calls sophia_lib only."""

from __future__ import annotations

from datetime import datetime, timedelta

import typer

from sophia_lib.config import load_config
from sophia_lib.warehouse import SnapshotInfo, build_all, open_warehouse, registered_builders

app = typer.Typer(help="Inspect, publish and roll back the warehouse's serving snapshots.",
                  no_args_is_help=True)

TIMEOUT_HELP = "Seconds to wait for the writer lock when a sync or publish is running."


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _age(age: timedelta) -> str:
    s = int(age.total_seconds())
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= span:
            return f"{s // span}{unit}"
    return f"{max(s, 0)}s"


def _when(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")


def _load_transforms() -> list[str]:
    """Import the transforms, so their build steps register; names of the registered steps."""
    import sophia_lib.transforms  # noqa: F401 - registers the "transforms" builder

    return list(registered_builders())


def _describe(info: SnapshotInfo) -> str:
    return f"snapshot {info.id} (as of {_when(info.as_of)}, {_size(info.size_bytes)})"


@app.command("status")
def status() -> None:
    """Snapshots kept (id, as of, size, age; * marks the current one) and raw_* tables with row counts."""
    wh = open_warehouse(load_config())
    try:
        st = wh.status()
    finally:
        wh.close()
    typer.echo(f"warehouse: {st.backend} at {st.location} (keeps {st.keep_snapshots} snapshots)")
    if st.snapshots:
        typer.echo("snapshots:")
        rows = [("", "ID", "AS OF", "SIZE", "AGE")] + [
            ("*" if s.current else "", s.id, _when(s.as_of), _size(s.size_bytes), _age(s.age))
            for s in reversed(st.snapshots)
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            typer.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    elif st.problem is None:
        typer.echo("snapshots: none — no snapshot published yet; "
                   "run `sophia warehouse publish` or `sophia demo`")
    typer.echo(f"raw ({st.raw_source}):" if st.raw else f"raw ({st.raw_source}): no raw_* tables yet")
    for schema, tables in st.raw.items():
        for table, count in tables.items():
            typer.echo(f"  {schema}.{table}  {count} rows")
    if st.problem:
        typer.secho(f"error: {st.problem}", err=True, fg="red")
        raise typer.Exit(1)


@app.command("publish")
def publish(
    as_of: str | None = typer.Option(None, "--as-of",
                                     help="ISO time the data is 'as of' (default: now, UTC)."),
    timeout: float = typer.Option(10.0, "--timeout", help=TIMEOUT_HELP),
) -> None:
    """Publish a new snapshot from the current raw store (plus core/marts from registered build steps)."""
    when = None
    if as_of is not None:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:  # a usage error: exit 2, like the other bad-argument cases
            typer.secho(f"error: --as-of {as_of!r} is not an ISO time.\n"
                        "  fix: write e.g. 2025-01-31T12:00:00+00:00", err=True, fg="red")
            raise typer.Exit(2) from None
    steps = _load_transforms()
    wh = open_warehouse(load_config())
    try:
        info = wh.publish(build=build_all if steps else None, as_of=when, timeout=timeout)
    finally:
        wh.close()
    built = f"build steps: {', '.join(steps)}" if steps else "raw only (no build steps registered)"
    typer.secho(f"published {_describe(info)}; {built}", fg="green")


@app.command("rollback")
def rollback(
    to: str | None = typer.Option(None, "--to",
                                  help="Snapshot id to make current (default: the previous one)."),
    timeout: float = typer.Option(10.0, "--timeout", help=TIMEOUT_HELP),
) -> None:
    """Make an older kept snapshot current again (also repairs a broken pointer)."""
    wh = open_warehouse(load_config())
    try:
        info = wh.rollback(to=to, timeout=timeout)
    finally:
        wh.close()
    typer.secho(f"current is now {_describe(info)}", fg="green")
