"""Stream helpers shared by connectors: schema drift capture, snapshot streams, reconciliation re-reads."""

from __future__ import annotations

import functools
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import dlt
from dlt.common.jsonpath import TJsonPath, compile_path

from sophia_lib.connectors.spec import DELETED_COLUMN, Stream, coerce

T = TypeVar("T")
R = TypeVar("R")


def new_fields(record: dict[str, Any], read: frozenset[str]) -> dict[str, Any]:
    """Top-level fields the connector does not know yet (schema drift): kept, under snake_case names."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in record.items() if k not in read}


@functools.lru_cache(maxsize=256)
def jsonpath(expression: str) -> TJsonPath:
    """A JSONPath parsed once per process, for dlt's paginators and ``data_selector``.

    dlt parses a path given as text on every paginator it builds and on every page it extracts, and the
    parse (a fresh yacc parser) costs about as much CPU as the request itself; a connector that pages
    thousands of small lists (Slack's thread replies) spent a third of its time there.
    """
    return compile_path(expression)


def snapshot_hints(stream: Stream) -> dict[str, Any]:
    """Hints of a stream read in full every sync: the table is replaced, so it equals the live list."""
    hints = stream.hints()
    hints["write_disposition"] = "replace"
    hints["columns"][DELETED_COLUMN] = {"data_type": "bool"}
    return hints


def unique(rows: list[dict[str, Any]], key: tuple[str, ...], seen: set[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows whose key was not seen earlier in this sync (a replaced table keeps every row it is given, so a
    record repeated across pages must be dropped here; a merge removes repeats by itself)."""
    out = []
    for row in rows:
        k = tuple(row.get(c) for c in key)
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


class Reconciliation:
    """A periodic full re-read that replaces a merged table, for vendors that expose no deletes.

    Due every ``every_s`` seconds of wall clock (the last one is remembered in the resource's dlt state),
    and on a full refresh. During one the cursor does not filter (everything is re-read), the first table
    carries the ``replace`` hint, repeats across pages are dropped, and the cursor is pinned to the newest
    value seen. Use inside a resource: ``rec = Reconciliation(cursor, stream, every_s, full)``, then
    ``yield from rec.tables(ctx.emit(...))`` per page and ``rec.done()`` at the end.
    """

    def __init__(self, cursor: Any, stream: Stream, every_s: float, full_refresh: bool) -> None:
        self.cursor, self.stream = cursor, stream
        self.state = dlt.current.resource_state()
        self.due = full_refresh or time.time() - float(self.state.get("reconciled_at") or 0) >= every_s
        self.seen: set[tuple[Any, ...]] = set()
        self.newest: Any = None
        self.first = True
        if self.due:
            cursor.advance(None)

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop repeats (only while replacing) and track the newest cursor value."""
        if not self.due:
            return rows
        rows = unique(rows, self.stream.primary_key, self.seen)
        values = [r.get(self.stream.cursor) for r in rows if r.get(self.stream.cursor) is not None]
        if values:
            self.newest = max([v for v in (self.newest,) if v is not None] + values)
        return rows

    def tables(self, tables: Iterator[Any]) -> Iterator[Any]:
        for table in tables:
            if self.due and self.first:
                table = dlt.mark.with_hints(table, dlt.mark.make_hints(write_disposition="replace"))
            self.first = False
            yield table

    def done(self) -> None:
        if self.due:
            if self.newest is not None:
                self.cursor.advance(coerce(self.newest, "timestamp"))
            self.state["reconciled_at"] = time.time()


def in_order_concurrently(fn: Callable[[T], R], items: Iterable[T], workers: int, backlog: int = 64) -> Iterator[R]:
    """``map(fn, items)`` with ``workers`` threads (each call is one or a few requests): results come back in the
    order of ``items``, at most ``backlog`` calls run ahead of the consumer, and an error is raised where its
    result would have been. Closing the iterator cancels what has not started."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sophia-fetch") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                while pending and (pending[0].done() or len(pending) > backlog):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
