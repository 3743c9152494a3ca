"""``sophia scheduler`` (the scheduler loop, in the foreground) and ``sophia refresh`` (one refresh, in-process).
Parses and calls sophia_lib.scheduler only."""

from __future__ import annotations

import json
import logging
import signal
import sys
from types import FrameType

import typer

from sophia_lib.config import load_config


def scheduler(
    once: bool = typer.Option(False, "--once", help="Run what is due now, wait for it, and exit (for cron or CI)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Run the scheduled jobs of the schedule until stopped (SIGTERM or Ctrl-C). This is the hub's
    `scheduler` service; with JUPYTERHUB_SERVICE_URL set it also answers GET <prefix>health."""
    from sophia_lib.scheduler.health import serve
    from sophia_lib.scheduler.loop import Scheduler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    loop = Scheduler(load_config())
    try:
        if once:
            outcomes = loop.run_once()
            for outcome in outcomes:
                typer.echo(f"{outcome.job} run #{outcome.run_id} attempt {outcome.attempt}: {outcome.status}")
            if any(o.status in ("failed", "timed_out") for o in outcomes):
                raise typer.Exit(1)
            return
        server = serve(loop)

        def _stop(signum: int, _frame: FrameType | None) -> None:
            logging.getLogger("sophia.scheduler").info("signal %d: stopping", signum)
            loop.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        loop.run_forever()
        if server is not None:
            server.shutdown()
    finally:
        loop.close()


def refresh(
    sync: bool = typer.Option(True, "--sync/--no-sync", help="Sync the sources first (--no-sync: publish the raw "
                              "store as it is)."),
    source: list[str] = typer.Option(None, "--source", "-s", help="Sync only this source (repeatable)."),
    hooks: bool = typer.Option(True, "--hooks/--no-hooks", help="Run the after-refresh hooks."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """One refresh in this process: sync → publish a snapshot with the transforms → after-refresh hooks.
    Exits 1 if any stage failed (the stages after it still ran where they could)."""
    from sophia_lib.scheduler.refresh import run_refresh

    result = run_refresh(load_config(), sync=sync, sources=source or None, hooks=hooks)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        typer.secho(result.report(), fg="green" if result.ok else "red", err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)
