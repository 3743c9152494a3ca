"""``python -m sophia_lib`` is the ``sophia`` command (used to start Sophia's own subprocesses)."""

from sophia_lib.cli import app

app()
