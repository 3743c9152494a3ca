"""``sophia query``: run the query service, or send it a query. Parses and calls sophia_lib only."""

from __future__ import annotations

import json
import logging
import sys

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="The query door: serve it (`serve`), or read through it (`sql`, `tables`).",
                  no_args_is_help=True)


@app.command("serve")
def serve(
    log_level: str = typer.Option("INFO", "--log-level", help="Python log level of the service."),
) -> None:
    """Run the query service until stopped (JupyterHub starts it this way as its `query` service).

    Binds JUPYTERHUB_SERVICE_URL when the hub runs it, else query.host:query.port from sophia.yaml."""
    from sophia_lib.query.service import serve as run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(load_config())


def _params(values: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            typer.secho(f"error: --param {item!r} is not NAME=VALUE.\n  fix: --param region=emea", err=True, fg="red")
            raise typer.Exit(2)
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    return params


@app.command("sql")
def sql(
    query: str = typer.Argument(..., help="One SELECT over core and marts (:name placeholders take --param)."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE bound to :NAME (JSON values allowed)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or jsonl."),
    url: str | None = typer.Option(None, "--url", help="Query service URL (default: SOPHIA_QUERY_URL or config)."),
) -> None:
    """Read through the query door with your hub token (SOPHIA_QUERY_TOKEN or JUPYTERHUB_API_TOKEN)."""
    from sophia_lib.query.client import QueryClient

    if fmt not in ("table", "csv", "jsonl"):
        typer.secho(f"error: --format {fmt!r} is not one of table, csv, jsonl.", err=True, fg="red")
        raise typer.Exit(2)
    client = QueryClient(url)
    try:
        frame = client.sql(query, _params(param))
    finally:
        client.close()
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "jsonl":
        frame.to_json(sys.stdout, orient="records", lines=True, date_format="iso")
    else:
        typer.echo(frame.to_string(index=False) if len(frame) else "(no rows)")
    typer.secho(f"{len(frame)} row(s), snapshot {frame.attrs.get('snapshot_id')} as of {frame.attrs.get('as_of')}",
                err=True, fg="green")


@app.command("tables")
def tables(
    url: str | None = typer.Option(None, "--url", help="Query service URL (default: SOPHIA_QUERY_URL or config)."),
) -> None:
    """The tables your role may read, with the columns masked for you."""
    from sophia_lib.query.client import QueryClient

    client = QueryClient(url)
    try:
        listed = client.tables()
    finally:
        client.close()
    for entry in listed:
        masked = f"  (masked: {', '.join(entry['masked'])})" if entry["masked"] else ""
        filtered = "  (row filter)" if entry["filtered"] else ""
        typer.echo(f"{entry['name']}{masked}{filtered}")
