"""``sophia dashboards …``, ``sophia publish`` and ``sophia unpublish``. Parses and calls sophia_lib only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="Dashboards: run the service, render snapshots, list them, see usage.", no_args_is_help=True)


@app.command("serve")
def serve(log_level: str = typer.Option("INFO", "--log-level", help="Python log level of the service.")) -> None:
    """Run the dashboards service until stopped (JupyterHub starts it this way as its `dashboards` service)."""
    from sophia_lib.dashboards.service import serve as run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(load_config())


@app.command("render")
def render() -> None:
    """Render every dashboard for every policy scope now (the refresh does this after each publish of data).

    Needs a trusted service's token (SOPHIA_QUERY_TOKEN or JUPYTERHUB_API_TOKEN): the notebooks query as
    each audience."""
    from sophia_lib.dashboards.snapshots import render_all, service_auth

    config = load_config()
    report = render_all(config, service_auth(config))
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")) -> None:
    """The dashboards (built-in and published), their audience, and pages in the current snapshot."""
    from sophia_lib.appdb import open_app_db
    from sophia_lib.dashboards import registry
    from sophia_lib.dashboards.snapshots import SnapshotStore

    config = load_config()
    app_db = open_app_db(config)
    try:
        dashboards = registry.load(config, app_db)
    finally:
        app_db.close()
    current = SnapshotStore.from_config(config).current() or {"pages": {}, "as_of": None}
    rows = []
    for d in dashboards.values():
        pages = [v for k, v in current["pages"].items() if k.endswith(f"/{d.slug}")]
        rows.append({"slug": d.slug, "title": d.title, "audience": list(d.audience),
                     "version": d.version, "author": d.author,
                     "pages_ok": sum(p["status"] == "ok" for p in pages),
                     "pages_failed": sum(p["status"] != "ok" for p in pages)})
    if as_json:
        typer.echo(json.dumps({"as_of": current.get("as_of"), "dashboards": rows}, indent=1))
        return
    typer.echo(f"{'SLUG':24} {'TITLE':28} {'PAGES':7} AUDIENCE")
    for r in rows:
        pages = f"{r['pages_ok']}" + (f"/{r['pages_failed']}!" if r["pages_failed"] else "")
        typer.echo(f"{r['slug']:24} {r['title'][:28]:28} {pages:7} {', '.join(r['audience'])}")
    typer.echo(f"data as of {current.get('as_of') or 'never rendered'}")


@app.command("usage")
def usage_(days: int = typer.Option(30, "--days", help="Look back this many days.")) -> None:
    """Views per dashboard per person (from the audit log)."""
    from sophia_lib.appdb import open_app_db
    from sophia_lib.dashboards.usage import usage

    app_db = open_app_db(load_config())
    try:
        rows = usage(app_db, days=days)
    finally:
        app_db.close()
    typer.echo(f"{'DASHBOARD':24} {'USER':20} {'VIEWS':>6} {'LIVE':>5} LAST")
    for r in rows:
        typer.echo(f"{r['dashboard']:24} {r['user']:20} {r['views']:>6} {r['live_views']:>5} {r['last_view']}")


def publish(
    notebook: Path = typer.Argument(..., help="The notebook to publish (.ipynb)."),
    title: str = typer.Option(..., "--title", help="Title shown in the dashboards list."),
    audience: str = typer.Option(..., "--audience", help="Hub groups that may see it, comma-separated."),
    slug: str | None = typer.Option(None, "--slug", help="URL name (default: from the title)."),
) -> None:
    """Publish a notebook as a dashboard: it runs as each audience first and is refused if any cell fails."""
    from sophia_lib.dashboards.client import publish_notebook
    from sophia_lib.dashboards.publish import PublishError

    try:
        result = publish_notebook(load_config(), notebook, title, audience.split(","), slug)
    except PublishError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        if exc.cell_index is not None:
            typer.secho(f"failing cell #{exc.cell_index} ({exc.scope}):\n{exc.cell_source or ''}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"published {result['slug']} v{result['version']} for {', '.join(result['audience'])}: "
               f"{result['url']}")


def unpublish(slug: str = typer.Argument(..., help="The published dashboard's slug.")) -> None:
    """Withdraw a published dashboard (its versions stay on record)."""
    from sophia_lib.dashboards.client import unpublish_dashboard

    result = unpublish_dashboard(load_config(), slug)
    typer.echo(f"unpublished {result['slug']} (v{result['unpublished_version']})")
