"""The backend-neutral warehouse contract: what every engine's ``Backend`` class implements.

Roles
-----
- ONE writer at a time (the refresh: sync then publish) — :meth:`Warehouse.raw_writer` and
  :meth:`Warehouse.publish` hold an inter-process writer lock and raise :class:`WriterBusyError`
  when another process holds it past ``timeout`` seconds.
- Any number of reader processes — :meth:`Warehouse.reader`. A reader is pinned to one published
  snapshot for its whole ``with`` block: it never blocks on the writer, never errors because a
  refresh is running, and never sees half a refresh.

Schemas: ``raw_<vendor>`` (written by the sync), ``core`` and ``marts`` (built at publish).
Every snapshot carries an ``id`` and an ``as_of`` time; every Arrow table a reader returns carries
them too, in its schema metadata (``sophia.snapshot_id``, ``sophia.as_of``).

Parameters in SQL are written ``:name`` and passed as a mapping (as in SQLAlchemy ``text()``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import pyarrow as pa

from sophia_lib.errors import SnapshotError, WarehouseError

TWriteMode = Literal["replace", "append"]
TParams = Mapping[str, Any] | None
SERVING_SCHEMAS = ("core", "marts")
RAW_PREFIX = "raw_"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
NO_SNAPSHOT_FIX = "run `sophia warehouse publish` (or `sophia demo`)"
# Same pattern SQLAlchemy's text() uses for :name bind parameters (skips '::' casts).
BIND_PARAM = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@dataclass(frozen=True)
class SnapshotInfo:
    """One published refresh: its id, the time its data is "as of", and when it was published."""

    id: str
    as_of: datetime
    published_at: datetime
    size_bytes: int | None = None
    current: bool = False

    @property
    def age(self) -> timedelta:
        return datetime.now(UTC) - self.published_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "as_of": self.as_of.isoformat(),
            "published_at": self.published_at.isoformat(),
            "size_bytes": self.size_bytes,
            "age_s": round(self.age.total_seconds(), 1),
            "current": self.current,
        }


@dataclass
class WarehouseStatus:
    """What ``sophia warehouse status`` shows."""

    backend: str
    location: str
    keep_snapshots: int
    current: SnapshotInfo | None
    snapshots: list[SnapshotInfo]
    raw: dict[str, dict[str, int]] = field(default_factory=dict)
    raw_source: str = "live"
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "location": self.location,
            "keep_snapshots": self.keep_snapshots,
            "current": self.current.to_dict() if self.current else None,
            "snapshots": [s.to_dict() for s in self.snapshots],
            "raw": self.raw,
            "raw_source": self.raw_source,
            "problem": self.problem,
        }


class RawWriter(ABC):
    """Writes ``raw_*`` tables while holding the writer lock (the sync's side)."""

    @abstractmethod
    def write_table(self, schema: str, table: str, data: Any, mode: TWriteMode = "replace") -> int:
        """Write a pyarrow Table or pandas DataFrame; return the number of rows written."""

    @abstractmethod
    def execute(self, sql: str, params: TParams = None) -> None:
        """Run a statement (committed on return)."""

    @abstractmethod
    def query(self, sql: str, params: TParams = None) -> pa.Table:
        """Run a query; Arrow out."""


class SnapshotBuilder(ABC):
    """What a publish build step gets: write ``core``/``marts``, read ``raw_*`` and what it built.

    Everything it does becomes visible to readers at once, when the publish flips, or not at all.
    """

    snapshot_id: str
    as_of: datetime

    @abstractmethod
    def write_table(self, schema: str, table: str, data: Any) -> int:
        """Create (or replace) ``schema.table`` in the snapshot being built."""

    @abstractmethod
    def execute(self, sql: str, params: TParams = None) -> None:
        """Run a statement inside the build (e.g. ``CREATE TABLE marts.x AS SELECT … FROM core.y``)."""

    @abstractmethod
    def query(self, sql: str, params: TParams = None) -> pa.Table:
        """Run a query inside the build; sees raw_* and everything built so far."""


class Reader(ABC):
    """A read-only view of one snapshot, for the length of a ``with wh.reader()`` block."""

    snapshot: SnapshotInfo

    @abstractmethod
    def query(self, sql: str, params: TParams = None) -> pa.Table:
        """Run a read-only query; the Arrow result carries the snapshot id and as_of."""


TBuild = Callable[[SnapshotBuilder], None]


class Warehouse(ABC):
    """Base of every engine's ``Backend``. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, url: str, *, keep_snapshots: int = 5, password: str | None = None,
                 prune_grace_s: float = 30.0) -> None:
        if keep_snapshots < 1:
            raise WarehouseError(f"keep_snapshots must be at least 1, got {keep_snapshots}.",
                                 fix="set warehouse.keep_snapshots to 2 or more")
        self.url = url
        self.keep_snapshots = keep_snapshots
        self.password = password
        self.prune_grace_s = prune_grace_s

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for messages (never includes a password)."""

    @abstractmethod
    def raw_writer(self, timeout: float = 10.0) -> AbstractContextManager[RawWriter]:
        """Hold the writer lock and write raw_* tables."""

    @abstractmethod
    def publish(self, build: TBuild | None = None, as_of: datetime | None = None,
                timeout: float = 10.0) -> SnapshotInfo:
        """Build a new snapshot (raw_* plus whatever ``build`` writes) and make it current atomically."""

    @abstractmethod
    def reader(self) -> AbstractContextManager[Reader]:
        """Open the current snapshot read-only."""

    @abstractmethod
    def snapshots(self) -> list[SnapshotInfo]:
        """Published snapshots still kept, oldest first."""

    @abstractmethod
    def rollback(self, to: str | None = None, timeout: float = 10.0) -> SnapshotInfo:
        """Make an older kept snapshot current (the previous one when ``to`` is None)."""

    @abstractmethod
    def raw_tables(self) -> tuple[dict[str, dict[str, int]], str]:
        """Row counts of raw_* tables by schema, and where they were read ('live' or a snapshot)."""

    def current(self) -> SnapshotInfo | None:
        return next((s for s in self.snapshots() if s.current), None)

    def status(self) -> WarehouseStatus:
        """Snapshots, raw row counts, and ``problem``: why a reader could not open the current snapshot."""
        snaps = self.snapshots()
        problem = None
        if snaps:
            try:
                with self.reader():
                    pass
            except SnapshotError as exc:
                problem = str(exc)
        current = next((s for s in snaps if s.current), None)
        raw, source = self.raw_tables()
        return WarehouseStatus(self.name, self.location, self.keep_snapshots, current, snaps, raw, source,
                               problem)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections (optional)."""


# ---- helpers shared by the backends -------------------------------------------------------------


def new_snapshot_id(now: datetime, taken: set[str]) -> str:
    """Sortable, identifier- and filename-safe id from the publish time: ``20250101_120000_123456``."""
    base = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S_%f")
    sid, n = base, 0
    while sid in taken:
        n += 1
        sid = f"{base}_{n}"
    return sid


def utc(value: datetime | None) -> datetime:
    """Aware UTC datetime; naive values are taken to be UTC."""
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_identifier(kind: str, name: str) -> str:
    if not IDENTIFIER.match(name):
        raise WarehouseError(
            f"invalid {kind} name {name!r}.",
            fix="use lower-case letters, digits and '_' (starting with a letter or '_', at most 63 chars)",
        )
    return name


def check_serving_schema(schema: str) -> str:
    if schema not in SERVING_SCHEMAS:
        raise WarehouseError(f"a snapshot build writes only {', '.join(SERVING_SCHEMAS)}; got {schema!r}.",
                             fix="raw_* tables are written by the sync through wh.raw_writer()")
    return schema


def check_raw_schema(schema: str) -> str:
    check_identifier("schema", schema)
    if not schema.startswith(RAW_PREFIX):
        raise WarehouseError(f"the raw writer writes only raw_<vendor> schemas; got {schema!r}.",
                             fix="name the schema raw_<vendor>; core and marts are built by publish")
    return schema


def qualified(schema: str, table: str) -> str:
    return f'"{check_identifier("schema", schema)}"."{check_identifier("table", table)}"'


def quote(*parts: str) -> str:
    """Quote an existing (possibly odd) name for SQL: ``"a"."b"``."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def to_arrow(data: Any) -> pa.Table:
    """Accept a pyarrow Table/RecordBatch or a pandas DataFrame."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise WarehouseError(f"cannot write a {type(data).__name__}.",
                         fix="pass a pyarrow.Table or a pandas.DataFrame")


def tag(table: pa.Table, info: SnapshotInfo) -> pa.Table:
    """Stamp a result with the snapshot it came from."""
    meta = dict(table.schema.metadata or {})
    meta[b"sophia.snapshot_id"] = info.id.encode()
    meta[b"sophia.as_of"] = info.as_of.isoformat().encode()
    return table.replace_schema_metadata(meta)


def result_snapshot(table: pa.Table) -> tuple[str, str]:
    """(snapshot id, as_of ISO) that a reader stamped on a result."""
    meta = table.schema.metadata or {}
    return meta[b"sophia.snapshot_id"].decode(), meta[b"sophia.as_of"].decode()


def pick_prunable(ids: list[str], current: str | None, keep: int) -> list[str]:
    """Ids (sorted oldest first) beyond the newest ``keep``; the current one is never pruned."""
    keep_set = set(sorted(ids)[-keep:]) | ({current} if current else set())
    return [i for i in sorted(ids) if i not in keep_set]


def rollback_target(ids: list[str], current: str | None, to: str | None) -> str:
    """Which kept snapshot a rollback makes current."""
    if to is not None:
        if to not in ids:
            raise SnapshotError(f"snapshot {to!r} is not kept (kept: {', '.join(ids) or 'none'}).",
                                fix="pick an id from `sophia warehouse status`")
        return to
    if not ids:
        raise SnapshotError("no snapshot published yet, nothing to roll back to.", fix=NO_SNAPSHOT_FIX)
    if current is None or current not in ids:
        return sorted(ids)[-1]  # pointer broken: repair to the newest good snapshot
    older = [i for i in sorted(ids) if i < current]
    if not older:
        raise SnapshotError(f"snapshot {current} is the oldest kept one; there is nothing older to roll "
                            "back to.", fix="pass --to ID to pick a snapshot from `sophia warehouse status`")
    return older[-1]
