"""``sophia metrics``: list and explain the metric definitions. Parses and calls sophia_lib only."""

from __future__ import annotations

import typer

from sophia_lib.config import load_config
from sophia_lib.metrics import load_catalog
from sophia_lib.metrics.catalog import describe

app = typer.Typer(help="List and explain the metrics of metrics.yaml.", no_args_is_help=True)


@app.command("list")
def list_metrics() -> None:
    """Every metric: name, type, unit and description."""
    catalog = load_catalog(load_config())
    rows = [(m.name, m.type, m.unit, m.description) for m in catalog]
    widths = [max(len(r[i]) for r in rows + [("NAME", "TYPE", "UNIT", "")]) for i in range(3)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(("NAME", "TYPE", "UNIT"), widths, strict=True)) + "  DESCRIPTION")
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    typer.echo(f"{len(rows)} metrics from {catalog.path}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Metric name (see `sophia metrics list`)."),
    sql: bool = typer.Option(False, "--sql", help="Also print the SQL it compiles to."),
    by: list[str] = typer.Option([], "--by", help="Dimension to group by (repeatable), for --sql."),
    grain: str | None = typer.Option(None, "--grain", help="day, week, month, quarter or year, for --sql."),
    dialect: str = typer.Option("duckdb", "--dialect", help="duckdb or postgres, for --sql."),
) -> None:
    """A metric's definition: type, unit, owner, measure or inputs, grains and dimensions."""
    catalog = load_catalog(load_config())
    metric = catalog.get(name)
    typer.echo(f"{metric.name} — {metric.display}")
    typer.echo(f"  {metric.description}")
    for key, value in describe(catalog, metric):
        typer.echo(f"  {key + ':':<17}{value}")
    if sql:
        compiled = catalog.compile(name, by=by, grain=grain, dialect=dialect)  # type: ignore[arg-type]
        typer.echo("")
        typer.echo(compiled.sql)
        if compiled.params:
            typer.echo(f"-- parameters: {compiled.params}")
