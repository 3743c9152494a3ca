"""``sophia doctor``: print what is installed and reachable, and the fix for what is not."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sophia_lib.doctor import exit_code, run_checks

STYLE = {"ok": "green", "warn": "yellow", "missing": "bold red"}
PIPE_WIDTH = 200  # piped into a log: one line per check rather than 80-column wrapping


def doctor() -> None:
    """Check Python, config, var_dir, warehouse, app database, hub, GPU and test tools; exit 1 if
    something needed to run is missing (optional parts only warn)."""
    checks = run_checks()
    table = Table(title="sophia doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(escape(check.name), f"[{STYLE[check.status]}]{check.status}[/]", escape(check.detail),
                      escape(check.fix))
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(width=PIPE_WIDTH if piped else None)
    console.print(table)
    code = exit_code(checks)
    missing = sum(c.status == "missing" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    if code:
        console.print(f"[bold red]{missing} missing[/], {warned} warning(s): apply the fixes above.")
    else:
        console.print(f"[green]ready[/] ({warned} optional warning(s)).")
    # sys.exit, not typer.Exit: the CLI runs click with standalone_mode=False, which turns Exit
    # into a return value that app() does not pass on.
    sys.exit(code)
