"""Warehouse readers for the query service, kept open between requests where the engine allows it.

Opening a DuckDB snapshot costs ~20 ms the first time and ~1 ms while another connection to the
same file is open, against ~1 ms for a small query, so the service keeps one *anchor* reader on the
current snapshot and one reader per worker thread, and re-checks which snapshot is current every
``poll_s`` seconds (a new one is picked up within that time; every result names the snapshot it
came from). PostgreSQL readers pin a transaction, which would hold back a publish, so there every
request opens its own reader.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sophia_lib.errors import SnapshotError, WarehouseError
from sophia_lib.query.guard import Catalog, Column
from sophia_lib.warehouse import Reader, SnapshotInfo, Warehouse

CATALOG_SQL = """
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_schema IN ('core', 'marts') OR table_schema LIKE 'raw\\_%' ESCAPE '\\'
ORDER BY table_schema, table_name, ordinal_position
"""


HARDEN_DUCKDB = ("SET enable_external_access = false", "SET lock_configuration = true")


def harden(reader: Reader) -> None:
    """Second line of defence behind the guard: this DuckDB may not touch files, URLs or settings any more."""
    for statement in HARDEN_DUCKDB:
        with contextlib.suppress(WarehouseError):  # already locked by an earlier reader of the same file
            reader.query(statement)


def load_catalog(reader: Reader) -> Catalog:
    """The serving tables (core, marts, raw_*) and their columns in the reader's snapshot."""
    table = reader.query(CATALOG_SQL).to_pydict()
    tables: dict[tuple[str, str], list[Column]] = {}
    for schema, name, column, dtype in zip(table["table_schema"], table["table_name"], table["column_name"],
                                           table["data_type"], strict=True):
        if "__" in schema:  # PostgreSQL keeps older snapshots as core__<id>; never served
            continue
        tables.setdefault((schema.lower(), name.lower()), []).append(Column(column, str(dtype)))
    return Catalog(reader.snapshot.id, {k: tuple(v) for k, v in tables.items()})


@dataclass
class _Anchor:
    info: SnapshotInfo
    catalog: Catalog
    context: AbstractContextManager[Reader]


class ReaderPool:
    """``with pool.reader() as (reader, catalog):`` a reader on the current snapshot and its catalog."""

    def __init__(self, wh: Warehouse, poll_s: float = 1.0) -> None:
        self.wh = wh
        self.poll_s = poll_s
        self.persistent = wh.name == "duckdb"
        self._lock = threading.Lock()
        self._local = threading.local()
        self._anchor: _Anchor | None = None
        self._catalogs: dict[str, Catalog] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self.persistent:
            with contextlib.suppress(SnapshotError):  # nothing published yet: the watcher picks it up later
                self.refresh()
            self._watcher = threading.Thread(target=self._watch, name="sophia-snapshot-watch", daemon=True)
            self._watcher.start()

    @property
    def current(self) -> tuple[SnapshotInfo, Catalog] | None:
        """The snapshot the pool serves now (None when nothing is published yet)."""
        anchor = self._anchor
        return (anchor.info, anchor.catalog) if anchor is not None else None

    def refresh(self) -> None:
        """Look at which snapshot is current now; anchor a new one if it changed."""
        with self._lock:
            context = self.wh.reader()
            try:
                reader = context.__enter__()
            except Exception:
                if self._anchor is None:
                    raise
                return  # keep serving the anchored snapshot; the next poll tries again
            harden(reader)
            if self._anchor is not None and self._anchor.info.id == reader.snapshot.id:
                context.__exit__(None, None, None)
                return
            old, self._anchor = self._anchor, _Anchor(reader.snapshot, load_catalog(reader), context)
            if old is not None:
                old.context.__exit__(None, None, None)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            with contextlib.suppress(Exception):
                self.refresh()

    @contextlib.contextmanager
    def reader(self) -> Iterator[tuple[Reader, Catalog]]:
        if not self.persistent:
            with self.wh.reader() as reader:
                catalog = self._catalogs.get(reader.snapshot.id)
                if catalog is None:
                    catalog = load_catalog(reader)
                    self._catalogs = {reader.snapshot.id: catalog}  # keep only the newest
                yield reader, catalog
            return
        if self._anchor is None:
            self.refresh()
        anchor = self._anchor
        assert anchor is not None
        held: tuple[str, AbstractContextManager[Reader], Reader] | None = getattr(self._local, "held", None)
        if held is None or held[0] != anchor.info.id:
            if held is not None:
                held[1].__exit__(None, None, None)
            context = self.wh.reader()
            reader = context.__enter__()
            if reader.snapshot.id != anchor.info.id:  # published between the anchor and now
                context.__exit__(None, None, None)
                self.refresh()
                context = self.wh.reader()
                reader = context.__enter__()
                anchor = self._anchor
                assert anchor is not None
            harden(reader)
            held = (reader.snapshot.id, context, reader)
            self._local.held = held
        catalog = anchor.catalog if anchor.info.id == held[0] else load_catalog(held[2])
        yield held[2], catalog

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        with self._lock:
            if self._anchor is not None:
                self._anchor.context.__exit__(None, None, None)
                self._anchor = None
