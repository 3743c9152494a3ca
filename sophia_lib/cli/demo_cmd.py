"""``sophia demo``: run the platform on its embedded defaults."""

from __future__ import annotations

import typer

from sophia_lib.config import load_config


def demo() -> None:
    """Set up and run the demo: sandbox company, vendor simulator, identity provider, warehouse.

    Prints what to open; Ctrl-C stops everything. A second run reuses what exists.
    """
    from sophia_lib.demo import run_demo
    from sophia_lib.processes import stop_on_signals

    stop_on_signals()
    try:
        run_demo(load_config(), echo=typer.echo)
    except KeyboardInterrupt:  # stopped while still starting: run_demo already stopped what it started
        typer.echo("stopped")
