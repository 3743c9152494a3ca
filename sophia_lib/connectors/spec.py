"""What a connector declares, and the context a sync hands it.

A connector module declares a :class:`Connector`: its streams (table name, primary key, cursor,
required fields, declared column types), the credentials it needs, its options and the real vendor's
base URL, and a ``source(ctx)`` function returning a dlt source. Everything behavioural (HTTP,
auth, throttling, staging quality) is shared: ``_http``, ``_auth`` and :func:`emit` below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import dlt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sophia_lib.connectors._http import Auth, Pacer, RetrySettings, ThrottlePolicy, VendorSession

TColumnType = Literal["text", "bigint", "double", "bool", "timestamp", "date", "json"]
QUARANTINE_TABLE = "_sophia_quarantine"
DELETED_COLUMN = "_sophia_deleted"
"""Rows with this column true are removed from the raw table on merge (dlt ``hard_delete`` hint)."""

_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(), "bigint": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(), "json": pa.string(),
}


@dataclass(frozen=True)
class Stream:
    """One raw table: ``raw_<vendor>.<name>``."""

    name: str
    primary_key: tuple[str, ...]
    cursor: str | None = None
    required: tuple[str, ...] = ()
    columns: Mapping[str, TColumnType] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.cursor and self.cursor not in self.required:
            object.__setattr__(self, "required", (*self.required, self.cursor))

    def hints(self) -> dict[str, Any]:
        """dlt resource hints: merge on the primary key; deletes via the hard-delete column."""
        columns: dict[str, Any] = {name: {"data_type": _dlt_type(kind)} for name, kind in self.columns.items()}
        columns[DELETED_COLUMN] = {"data_type": "bool", "hard_delete": True}
        return {"name": self.name, "table_name": self.name, "primary_key": list(self.primary_key),
                "write_disposition": "merge", "columns": columns}


def _dlt_type(kind: TColumnType) -> str:
    return {"text": "text", "bigint": "bigint", "double": "double", "bool": "bool", "timestamp": "timestamp",
            "date": "date", "json": "text"}[kind]


@dataclass
class SourceContext:
    """Everything a connector's ``source()`` gets from the sync: where, who, since when."""

    name: str
    base_url: str
    options: dict[str, Any]
    secret: Callable[[str], str]
    save_secret: Callable[[str, str], None]
    full_refresh: bool = False
    start_date: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    retry: RetrySettings = field(default_factory=RetrySettings)
    on_page: Callable[[str, int], None] | None = None
    on_retry: Callable[[str, Any], None] | None = None
    sessions: list[VendorSession] = field(default_factory=list)

    def session(self, auth: Auth | None = None, policy: ThrottlePolicy | None = None,
                rate_per_s: float | None = None) -> VendorSession:
        """The HTTP session for this source (throttle-aware, paced, bounded); counted for run records."""
        session = VendorSession(self.name, auth=auth, policy=policy,
                                pacer=Pacer(rate_per_s) if rate_per_s else None, retry=self.retry,
                                on_retry=self.on_retry)
        self.sessions.append(session)
        return session

    quarantine: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def emit(self, stream: Stream, records: list[dict[str, Any]],
             deleted: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[pa.Table]:
        """:func:`emit` into this sync's quarantine, reporting progress per page."""
        if self.on_page is not None:
            self.on_page(stream.name, len(records))
        yield from emit(stream, records, self.quarantine, deleted)


@dataclass(frozen=True)
class Connector:
    """A vendor's declaration. ``source(ctx)`` returns the dlt source of all its streams."""

    name: str
    title: str
    default_base_url: str
    credentials: tuple[str, ...]
    streams: tuple[Stream, ...]
    source: Callable[[SourceContext], Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    docs: str = ""

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(f"{self.name} has no stream {name!r}; streams: {', '.join(s.name for s in self.streams)}")


def incremental(stream: Stream, initial_value: Any, lag: float | None = None) -> Any:
    """The dlt cursor for a stream. ``lag`` (seconds for datetimes) re-reads an overlap window each run,
    for vendors whose indexes lag their writes; the merge on the primary key removes the duplicates.
    Quarantine rows carry no cursor, so rows without one pass through (valid rows always have one:
    the cursor is a required field)."""
    if stream.cursor is None:
        raise ValueError(f"stream {stream.name} declares no cursor")
    return dlt.sources.incremental(stream.cursor, initial_value=initial_value, lag=lag,
                                   on_cursor_value_missing="include")


BATCH_ROWS = 20_000
"""Rows per item handed to dlt: pages are concatenated up to this (dlt's cost is mostly per item, not per row)."""


def batched(items: Iterable[Any], rows: int = BATCH_ROWS) -> Iterator[Any]:
    """Consecutive Arrow pages of one resource, concatenated into tables of up to ``rows`` rows.

    Only pages with the same schema are joined (a page with other columns or types starts a new table, so
    drift is seen exactly as page by page); anything else — a table marked with dlt hints, a list — first
    flushes what is buffered and then passes through unchanged, so the order of items is kept.
    """
    buffer: list[pa.Table] = []
    count = 0
    for item in items:
        if isinstance(item, pa.Table):
            if buffer and not item.schema.equals(buffer[0].schema):
                yield _concat(buffer)
                buffer, count = [], 0
            buffer.append(item)
            count += item.num_rows
            if count >= rows:
                yield _concat(buffer)
                buffer, count = [], 0
            continue
        if buffer:
            yield _concat(buffer)
            buffer, count = [], 0
        yield item
    if buffer:
        yield _concat(buffer)


def batch_pages(source: Any, rows: int = BATCH_ROWS) -> Any:
    """Make every selected resource of a dlt source hand dlt its pages joined by :func:`batched`.

    dlt's extract costs a few milliseconds per item (schema computation, load-id column, file write) whatever
    its size, which dominated syncs of 100-row pages. The join wraps the resource's generator, so it comes
    before every pipe step: the cursor, drift and variant steps see the same rows in the same order. A
    transformer is fed item by item by its parent and is left alone. dlt has no public hook for wrapping a
    resource's generator, hence ``_pipe``; the connector tests run through here and fail if dlt changes it.
    """
    for resource in source.selected_resources.values():
        if resource.is_transformer:
            continue
        pipe = resource._pipe
        gen = pipe.gen
        pipe.replace_gen(_joined(gen, rows) if callable(gen) else batched(gen, rows))
    return source


def _joined(gen: Callable[[], Iterable[Any]], rows: int) -> Callable[[], Iterator[Any]]:
    def pages() -> Iterator[Any]:
        return batched(gen(), rows)

    return pages


def _concat(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()


# --- staging quality -----------------------------------------------------------------------------------


def emit(stream: Stream, records: list[dict[str, Any]], quarantine: list[dict[str, Any]],
         deleted: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[pa.Table]:
    """Validate one page of records and yield it as an Arrow table.

    Checks: primary key present, required fields present, declared types coercible. A row that fails
    is appended to ``quarantine`` with the reason — never silently dropped; the sync writes those rows
    to ``raw_<vendor>._sophia_quarantine``. The cursor still moves past a quarantined row: it is read
    again when the vendor next changes the record, or by a ``--full-refresh`` sync after the cause is
    fixed (the quarantine table keeps the record meanwhile). Repeats of a key within the page (overlapping pages) keep
    the last copy. Nested values become JSON text. ``deleted(record)`` marks tombstones, which the
    merge removes from the raw table.
    """
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    seen: dict[tuple, int] = {}
    for record in records:
        gone = isinstance(record, dict) and deleted is not None and bool(deleted(record))
        reason = _problem(stream, record, tombstone=gone)
        if reason:
            bad.append(_quarantine_row(stream, record, reason))
            continue
        row = dict(record)
        row[DELETED_COLUMN] = gone
        key = tuple(row[k] for k in stream.primary_key)
        if key in seen:
            good[seen[key]] = row
        else:
            seen[key] = len(good)
            good.append(row)
    if good:
        table, failures = _to_arrow(stream, good)
        bad.extend(failures)
        if table is not None and table.num_rows:
            yield table
    quarantine.extend(bad)


def _problem(stream: Stream, record: dict[str, Any], tombstone: bool = False) -> str | None:
    """Why a record cannot be loaded, or None. A tombstone needs only its key (vendors send little else)."""
    if not isinstance(record, dict):
        return f"record is a {type(record).__name__}, not an object"
    missing = [k for k in stream.primary_key if _empty(record.get(k))]
    if missing:
        return f"primary key {missing} missing"
    if tombstone:
        return None
    absent = [k for k in stream.required if _empty(record.get(k))]
    if absent:
        return f"required field(s) {absent} missing"
    return None


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _quarantine_row(stream: Stream, record: Any, reason: str) -> dict[str, Any]:
    key = None
    if isinstance(record, dict):
        key = json.dumps([record.get(k) for k in stream.primary_key], default=str)
    return {"stream": stream.name, "record_key": key, "reason": reason,
            "record": json.dumps(record, default=str, sort_keys=True),
            "quarantined_at": datetime.now(UTC)}


def _to_arrow(stream: Stream, rows: list[dict[str, Any]]) -> tuple[pa.Table | None, list[dict[str, Any]]]:
    """Column-wise conversion; a row whose declared column cannot be coerced is quarantined.

    A declared column whose values are all of one plain type (ISO strings, ints, datetimes …) is converted
    by Arrow in one call (:func:`_fast_column`); any other column goes value by value through
    :func:`coerce`, which also names the failures. Both paths give the same values."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    failed: dict[int, str] = {}
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        kind = stream.columns.get(name)
        if name == DELETED_COLUMN:
            arrays[name] = pa.array(values, pa.bool_())
        elif kind is None:
            arrays[name] = _infer([json.dumps(v, default=str) if isinstance(v, dict | list) else v for v in values])
        elif (fast := _fast_column(values, kind)) is not None:
            arrays[name] = fast
        else:
            converted = []
            for i, value in enumerate(values):
                try:
                    converted.append(coerce(value, kind))
                except (TypeError, ValueError) as exc:
                    failed.setdefault(i, f"{name}: expected {kind}, got {value!r} ({exc})")
                    converted.append(None)
            arrays[name] = pa.array(converted, _ARROW[kind])
    quarantined = [_quarantine_row(stream, {k: v for k, v in rows[i].items() if k != DELETED_COLUMN}, reason)
                   for i, reason in failed.items()]
    if len(failed) == len(rows):
        return None, quarantined
    # Key columns are never null (rows without a key were quarantined above); saying so keeps the Arrow
    # schema in step with dlt's (which marks primary keys not nullable).
    schema = pa.schema([pa.field(name, array.type, nullable=name not in stream.primary_key)
                        for name, array in arrays.items()])
    table = pa.Table.from_arrays(list(arrays.values()), schema=schema)
    if failed:
        table = table.filter(pa.array([i not in failed for i in range(len(rows))], pa.bool_()))
    return table, quarantined


_NONE = type(None)
_MIN_MICROS, _MAX_MICROS = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 to 9999


def _fast_column(values: list[Any], kind: TColumnType) -> pa.Array | None:
    """The column converted by Arrow at once, or None when its values need :func:`coerce` one by one.

    Taken only where Arrow gives exactly what :func:`coerce` would: ISO-8601 strings with an offset (UTC) or
    without one (read as UTC), epoch integers (seconds, or milliseconds above 1e11), datetimes, dates,
    plain ints/floats/bools/strings; empty strings and NaN become null as :func:`_empty` says."""
    types = set(map(type, values))
    types.discard(_NONE)
    try:
        if not types:
            return pa.array(values, _ARROW[kind])
        if types == {str}:
            strings = pa.array(values, pa.string())
            strings = pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)
            if kind in ("text", "json"):
                return strings
            if kind == "timestamp":
                return _iso_timestamps(strings)
            if kind == "date":
                return strings.cast(pa.date32())
            return None
        if kind == "json":
            return None
        if kind == "bigint" and types == {int}:
            return pa.array(values, pa.int64())
        if kind == "double" and types <= {int, float}:
            return pa.array(values, pa.float64(), from_pandas=True)
        if kind == "bool" and types == {bool}:
            return pa.array(values, pa.bool_())
        if kind == "timestamp" and types == {datetime}:
            return pa.array(values, _ARROW["timestamp"])
        if kind == "timestamp" and types == {int}:
            epoch = pa.array(values, pa.int64())
            micros = pc.if_else(pc.greater(epoch, 100_000_000_000), pc.multiply_checked(epoch, 1_000),
                                pc.multiply_checked(epoch, 1_000_000))
            bounds = pc.min_max(micros)
            if bounds["min"].as_py() < _MIN_MICROS or bounds["max"].as_py() > _MAX_MICROS:
                return None  # outside what a datetime holds: coerce names the failure
            return micros.cast(_ARROW["timestamp"])
        if kind == "date" and types == {date}:
            return pa.array(values, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError):
        return None
    return None


def _iso_timestamps(strings: pa.Array) -> pa.Array:
    """ISO-8601 text to UTC microseconds: all with a zone offset, or all without (read as UTC)."""
    try:
        return strings.cast(_ARROW["timestamp"])
    except pa.ArrowInvalid:
        return pc.assume_timezone(strings.cast(pa.timestamp("us")), "UTC")


def _infer(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_null(array.type):
        return pa.array(values, pa.string())
    return array


def coerce(value: Any, kind: TColumnType) -> Any:
    """One value to a declared type; raises ValueError/TypeError when it cannot be."""
    if _empty(value):
        return None
    if kind == "text":
        if isinstance(value, dict | list):
            raise TypeError("nested value where text was declared")
        return str(value)
    if kind == "bigint":
        if isinstance(value, bool):
            raise TypeError("boolean where a number was declared")
        number = float(value) if isinstance(value, str) else value
        if not float(number).is_integer():
            raise ValueError("not an integer")
        return int(number)
    if kind == "double":
        if isinstance(value, bool | dict | list):
            raise TypeError("not a number")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "t", "f", "1", "0"):
            return value.lower() in ("true", "t", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("not a boolean")
    if kind == "timestamp":
        return _timestamp(value)
    if kind == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return _timestamp(value).date()
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, default=str)
    raise ValueError(f"unknown column type {kind!r}")


def _timestamp(value: Any) -> datetime:
    if isinstance(value, bool | dict | list):
        raise TypeError("not a timestamp")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = float(value)
        if number > 1e11:
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=UTC)
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError("not a timestamp")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").to_pydatetime()
