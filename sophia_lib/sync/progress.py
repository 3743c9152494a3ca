"""Progress bars per source (records, pages, rate), fed by ``SourceContext.on_page``.

Bars go to stderr and only when it is a terminal: a scheduled job's log gets the summary lines, not
a stream of redraws.
"""

from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class SourceProgress(Protocol):
    def page(self, stream: str, records: int) -> None: ...
    def loading(self) -> None: ...
    def done(self, status: str) -> None: ...


class _Silent:
    def page(self, stream: str, records: int) -> None:
        pass

    def loading(self) -> None:
        pass

    def done(self, status: str) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._pages = 0
        self._lock = threading.Lock()

    def page(self, stream: str, records: int) -> None:
        with self._lock:
            self._pages += 1
            self._progress.update(self._task, advance=records, pages=self._pages, step=stream)
            task = next(t for t in self._progress.tasks if t.id == self._task)
            if task.elapsed:
                self._progress.update(self._task, rate=f"{task.completed / task.elapsed:,.0f}/s")

    def loading(self) -> None:
        self._progress.update(self._task, step="loading")

    def done(self, status: str) -> None:
        self._progress.update(self._task, step=status)
        self._progress.stop_task(self._task)


class SyncProgress(AbstractContextManager["SyncProgress"]):
    """``with SyncProgress(enabled) as p: bar = p.source("hubspot")``; a no-op when disabled or not a TTY."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled and (console is not None or sys.stderr.isatty())
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description:<12}"),
                TextColumn("{task.completed:>9,.0f} records"), TextColumn("{task.fields[pages]:>5} pages"),
                TextColumn("{task.fields[rate]:>9}"),
                TextColumn("[dim]{task.fields[step]}"), TimeElapsedColumn(),
                console=self.console, transient=False)

    def source(self, name: str) -> SourceProgress:
        if self._progress is None:
            return _Silent()
        task = self._progress.add_task(name, total=None, pages=0, step="starting", rate="")
        return _Bar(self._progress, task)

    def __enter__(self) -> SyncProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
