"""The ``sophia`` command line: parses arguments and calls ``sophia_lib``; nothing more.

Exit codes: 0 success, 1 a runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import sys

import typer

from sophia_lib.cli import (
    alerts_cmd,
    audit_cmd,
    config_cmd,
    credentials_cmd,
    dashboards_cmd,
    demo_cmd,
    doctor_cmd,
    hub_cmd,
    jobs_cmd,
    metrics_cmd,
    query_cmd,
    reports_cmd,
    scheduler_cmd,
    sources_cmd,
    sync_cmd,
    warehouse_cmd,
)
from sophia_lib.errors import ConfigError, SophiaError

cli = typer.Typer(
    name="sophia",
    help="Sophia analytics workbench: sync, warehouse, metrics, dashboards and reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(config_cmd.app, name="config")
cli.add_typer(warehouse_cmd.app, name="warehouse")
cli.add_typer(credentials_cmd.app, name="credentials")
cli.add_typer(sources_cmd.app, name="sources")
cli.command("sync")(sync_cmd.sync)
cli.command("doctor")(doctor_cmd.doctor)
cli.command("demo")(demo_cmd.demo)
cli.add_typer(hub_cmd.app, name="hub")
cli.add_typer(metrics_cmd.app, name="metrics")
cli.add_typer(query_cmd.app, name="query")
cli.add_typer(audit_cmd.app, name="audit")
cli.add_typer(jobs_cmd.app, name="jobs")
cli.command("scheduler")(scheduler_cmd.scheduler)
cli.command("refresh")(scheduler_cmd.refresh)
cli.add_typer(dashboards_cmd.app, name="dashboards")
cli.command("publish")(dashboards_cmd.publish)
cli.command("unpublish")(dashboards_cmd.unpublish)
cli.add_typer(alerts_cmd.app, name="alerts")
cli.add_typer(reports_cmd.app, name="reports")

try:  # each later surface registers here as it lands
    from sophia_lib.cli import sandbox_cmd

    cli.add_typer(sandbox_cmd.app, name="sandbox")
except ImportError:  # pragma: no cover - sandbox not present in a stripped install
    pass

EXIT_RUNTIME = 1
EXIT_USAGE = 2


def app() -> None:
    """Console-script entry point: run the CLI, turning Sophia errors into one clear message.

    Click's standalone mode handles usage errors (exit 2), ``--help`` and ``typer.Exit``;
    Sophia's own errors arrive here and are printed without a traceback.
    """
    try:
        cli()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(EXIT_USAGE)
    except SophiaError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(EXIT_RUNTIME)
