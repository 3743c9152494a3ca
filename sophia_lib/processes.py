"""Process plumbing shared by the long-running commands (`sophia demo`, `sophia sandbox serve`)."""

from __future__ import annotations

import signal
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt in the main thread.

    Installed explicitly because a process started in the background of a non-interactive shell
    (CI, nohup, a supervisor) inherits SIGINT as *ignored*, and SIGTERM would otherwise kill it
    without stopping what it started.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def ignore_further_signals() -> None:
    """While shutting down, a second Ctrl-C or SIGTERM must not interrupt the cleanup half-way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
