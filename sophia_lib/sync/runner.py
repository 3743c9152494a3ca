"""Sync sources into the raw store: one dlt pipeline per source, in parallel, recorded in the app DB.

For each source, in its own thread (at most ``sync.parallelism`` at once)::

    per-source file lock (var_dir/sync/<name>.lock)     one sync of a source at a time, across processes
    mark runs left 'running' by a killed process as failed (interrupted); record a new SyncRun 'running'
    ┌ under the load lock ──────────────────────────────────────────────────────────────────────────┐
    │ restore dlt state from the destination if the local pipeline folder is gone; normalize and     │
    │ load packages a killed run left behind (dlt keeps them on disk until they are loaded)          │
    └────────────────────────────────────────────────────────────────────────────────────────────────┘
    extract (HTTP, the slow part) and normalize             in parallel with other sources, no lock
    ┌ under the load lock ──────────────────────────────────────────────────────────────────────────┐
    │ key snapshot per stream → dlt load → inserted/updated/deleted; quarantine rows; schema events  │
    └────────────────────────────────────────────────────────────────────────────────────────────────┘
    SyncRun succeeded/failed with per-stream stats, QuarantineSummary, SchemaEvent rows

The load lock is a process lock plus the warehouse writer lock (``wh.raw_writer()``): DuckDB allows
one writing process per file, so loads are serialized while extraction runs in parallel; on
PostgreSQL the same order keeps one writer per database (the warehouse's advisory lock).

Crash safety comes from dlt's stages handing off through load packages on disk: the cursor state is
committed with the extracted package, so a run killed after extraction leaves a package that the
next run loads first; a run killed during extraction leaves nothing behind (the cursor did not move).

Row counts are exact: before the load each touched table's primary keys are copied to a temporary
table, so after the load ``updated`` = rows of this load whose key existed (rows a vendor's overlap
window re-read are rewritten by the merge and count too), ``inserted`` = the rest of this load's rows,
``deleted`` = keys that were there before and are gone now.

Schema drift: dlt makes variant columns (``col__v_<type>``) only for JSON rows, and connectors yield
Arrow pages, so a value whose type conflicts with its raw column is cast when that is lossless and
otherwise moved to the variant column here (:func:`_variants`); the load never fails on drift, and the
run records ``added``/``retyped``/``removed`` SchemaEvents (see :meth:`SourceSync._schema_changes`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any, Literal

import dlt
import pyarrow as pa
from filelock import FileLock, Timeout
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import QuarantineSummary, SchemaEvent, SyncRun, SyncStreamStat
from sophia_lib.config import SophiaConfig
from sophia_lib.connectors import Connector, SourceContext, connector, connectors
from sophia_lib.connectors.errors import SourceConfigError, SourceError
from sophia_lib.connectors.spec import DELETED_COLUMN, QUARANTINE_TABLE, batch_pages
from sophia_lib.errors import SophiaError
from sophia_lib.sync.configuration import SyncSettings, with_sandbox_sources
from sophia_lib.sync.exceptions import SourceBusyError, UnknownSourceError
from sophia_lib.sync.progress import SourceProgress, SyncProgress
from sophia_lib.warehouse import RawWriter, Warehouse, open_warehouse

log = logging.getLogger("sophia.sync")

TSourceStatus = Literal["succeeded", "failed", "skipped"]
INTERRUPTED = ("interrupted: the sync process ended before this run finished (killed or crashed); "
               "the next run loaded whatever it had extracted")
VARIANT = re.compile(r"^(?P<base>.+)__v_(?P<type>[a-z0-9_]+)$")

_DLT_CONFIG_LOCK = threading.Lock()


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """What one stream of a source did in one run."""

    stream: str
    status: str = "succeeded"
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    records: int = 0
    pages: int = 0
    retries: int = 0
    quarantined: int = 0
    duration_s: float | None = None
    error: str | None = None


@dataclass
class SchemaChange:
    stream: str
    column: str
    change: Literal["added", "removed", "retyped"]
    old_type: str | None = None
    new_type: str | None = None


@dataclass
class SourceRunResult:
    """The outcome of syncing one source (also what ``sophia sync`` prints)."""

    source: str
    status: TSourceStatus
    run_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_reason: str | None = None
    fix: str | None = None
    streams: dict[str, StreamResult] = field(default_factory=dict)
    schema_changes: list[SchemaChange] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    answer_s: float = 0.0
    """Seconds spent waiting for the vendor's answers, summed over the source's threads (the vendor's share)."""
    paced_s: float = 0.0
    """Seconds requests were held back to stay under the vendor's rate limit."""
    recovered_loads: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def total(self, what: str) -> int:
        return sum(getattr(s, what) for s in self.streams.values())

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["started_at"] = self.started_at.isoformat() if self.started_at else None
        body["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        body["duration_s"] = self.duration_s
        return body


# --- choosing sources -----------------------------------------------------------------------------------


def select_sources(config: SophiaConfig, names: list[str] | None = None) -> list[str]:
    """The enabled configured sources, or the named ones (an unknown or unconfigured name lists the valid ones)."""
    configured = sorted(config.sources)
    if not names:
        return [n for n in configured if config.sources[n].enabled]
    known = connectors()
    chosen: list[str] = []
    for name in dict.fromkeys(names):
        if name not in configured:
            if name in known:
                raise UnknownSourceError(
                    f"source {name!r} is not configured; configured sources: {', '.join(configured) or 'none'}.",
                    fix=f"add `sources: {{{name}: {{credentials: …}}}}` to sophia.yaml "
                        f"(credentials it needs: {', '.join(known[name].credentials) or 'none'})")
            raise UnknownSourceError(
                f"unknown source {name!r}; valid: {', '.join(configured) or 'none configured'}"
                f" (connectors: {', '.join(known) or 'none'}).",
                fix="pass one of the configured names to --source")
        if not config.sources[name].enabled:
            raise UnknownSourceError(f"source {name!r} is disabled in sophia.yaml.",
                                     fix=f"set sources.{name}.enabled: true to sync it")
        chosen.append(name)
    return chosen


FROZEN = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
"""``schema_changes: freeze``: new streams still get their tables, but a new column or a changed type on an
existing table fails the run (dlt's schema contract) instead of evolving the raw table."""


# --- the source context --------------------------------------------------------------------------------


def source_context(config: SophiaConfig, name: str, spec: Connector, settings: SyncSettings,
                   full_refresh: bool = False) -> SourceContext:
    """Everything the connector needs; missing credentials fail here with the YAML key to add."""
    source = config.sources[name]
    missing = [key for key in spec.credentials if key not in source.credentials]
    if missing:
        keys = ", ".join(f"sources.{name}.credentials.{key}" for key in missing)
        example = f"{missing[0]}: {{secret: {name.upper()}_{missing[0].upper()}}}"
        raise SourceConfigError(
            name, f"credential(s) {', '.join(missing)} not configured ({keys})",
            fix=f"add under sources.{name}.credentials in sophia.yaml e.g. `{example}`, and store the value "
                f"with `sophia credentials set {name.upper()}_{missing[0].upper()}`")
    rotated: dict[str, str] = {}

    def secret(key: str) -> str:
        from sophia_lib.secrets import resolve

        if key in rotated:
            return rotated[key]
        ref = source.credentials.get(key)
        if ref is None:
            raise SourceConfigError(name, f"credential {key!r} is not configured (sources.{name}.credentials.{key})",
                                    fix=f"add `{key}: {{secret: NAME}}` under sources.{name}.credentials")
        return resolve(ref, config)

    def save_secret(key: str, value: str) -> None:
        rotated[key] = value  # the rest of this run uses the new value, whatever happens below
        ref = source.credentials.get(key)
        if ref is None:
            log.error("%s: the vendor rotated %r but sophia.yaml has no sources.%s.credentials.%s to save it to; "
                      "the next sync will need a re-authorization", name, key, name, key)
            return
        try:
            from sophia_lib.secrets import open_store

            open_store(config).set(ref.secret, value)
        except SophiaError as exc:  # never fail a sync mid-way for this; say loudly what to do
            log.error("%s: could not save the rotated %s to secret %s: %s", name, key, ref.secret, exc)

    return SourceContext(
        name=name, base_url=source.base_url or spec.default_base_url, options={**spec.options, **source.options},
        secret=secret, save_secret=save_secret, full_refresh=full_refresh,
        start_date=datetime.combine(source.start_date, dtime.min, tzinfo=UTC), retry=settings.retry)


# --- the load lock and destinations ---------------------------------------------------------------------


class _Loader:
    """Serializes writes to the raw store: a process lock, then the warehouse writer lock."""

    def __init__(self, wh: Warehouse, settings: SyncSettings) -> None:
        self.wh = wh
        self.settings = settings
        self._lock = threading.Lock()

    def destination(self, writer: RawWriter | None = None) -> Any:
        """The dlt destination of the raw store (with a live connection when ``writer`` is given)."""
        if self.wh.name == "duckdb":
            credentials = writer.connection if writer is not None else str(self.wh.raw_path)  # type: ignore[attr-defined]
            return dlt.destinations.duckdb(credentials=credentials)
        # dlt's sqlalchemy destination over psycopg 3 (the driver the warehouse already uses);
        # dlt's own `postgres` destination would need psycopg2.
        url = make_url(self.wh.url)
        if url.drivername in ("postgresql", "postgresql+psycopg2"):
            url = url.set(drivername="postgresql+psycopg")
        if self.wh.password:
            url = url.set(password=self.wh.password)
        return dlt.destinations.sqlalchemy(credentials=url.render_as_string(hide_password=False))

    @contextlib.contextmanager
    def writer(self) -> Iterator[tuple[Any, RawWriter]]:
        with self._lock, self.wh.raw_writer(timeout=self.settings.writer_wait_s) as writer:
            yield self.destination(writer), writer


# --- observing a source while it extracts ----------------------------------------------------------------


class _Observer:
    """Pages, records, retries, columns and tombstones per stream, from the connector's callbacks."""

    def __init__(self, bar: SourceProgress) -> None:
        self.bar = bar
        self.started = time.monotonic()
        self.pages: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.last_page: dict[str, float] = {}
        self.columns: dict[str, set[str]] = defaultdict(set)
        self._pending_retries = 0
        self._lock = threading.Lock()

    def page(self, stream: str, records: int) -> None:
        with self._lock:
            self.pages[stream] += 1
            self.records[stream] += records
            self.last_page[stream] = time.monotonic()
            # a retried request is the one that delivered this page
            self.retries[stream] += self._pending_retries
            self._pending_retries = 0
        self.bar.page(stream, records)

    def retry(self, vendor: str, verdict: Any) -> None:
        with self._lock:
            self._pending_retries += 1

    def watch(self, stream: str, normalize: Callable[[str], str],
              known: dict[str, str]) -> Callable[[Any], Any]:
        """A map step for the stream's resource: notes the columns each page carries and turns a value
        whose type conflicts with the raw table's column into a variant column (see :func:`_variants`)."""
        def seen(item: Any) -> Any:
            if isinstance(item, pa.RecordBatch):
                item = pa.Table.from_batches([item])
            if not isinstance(item, pa.Table):
                return item
            item = _variants(item, known, normalize)
            with self._lock:
                self.columns[stream].update(n if VARIANT.match(n) else normalize(n) for n in item.schema.names)
            return item

        return seen

    def duration(self, stream: str) -> float | None:
        last = self.last_page.get(stream)
        return None if last is None else round(last - self.started, 3)


# --- one source -------------------------------------------------------------------------------------------


class SourceSync:
    """One run of one source; :meth:`run` never raises for the source's own failures."""

    def __init__(self, config: SophiaConfig, name: str, settings: SyncSettings, app_db: AppDb, loader: _Loader,
                 bar: SourceProgress, full_refresh: bool = False) -> None:
        self.config = config
        self.name = name
        self.settings = settings
        self.app_db = app_db
        self.loader = loader
        self.bar = bar
        self.full_refresh = full_refresh
        self.result = SourceRunResult(name, "failed")
        self._quarantine_summaries: list[QuarantineSummary] = []

    # -- lock and bookkeeping --

    def run(self) -> SourceRunResult:
        self.settings.locks_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.locks_dir / f"{self.name}.lock"
        lock = FileLock(path, thread_local=False)
        try:
            lock.acquire(timeout=self.settings.lock_wait_s)
        except Timeout:
            busy = SourceBusyError(f"{self.name}: already running ({_holder(path)}).",
                                   fix="wait for that sync to finish; it is not retried now")
            self.bar.done("already running")
            return SourceRunResult(self.name, "skipped", error=busy.message, error_reason=busy.reason, fix=busy.fix)
        try:
            _write_holder(path)
            self._mark_interrupted()
            self._start()
            try:
                self._sync()
                self.result.status = "succeeded"
            except Exception as exc:  # a failed source never stops the others
                self._fail(exc)
            self._finish()
        finally:
            lock.release()
        self.bar.done(self.result.status)
        return self.result

    def _mark_interrupted(self) -> None:
        """Runs of this source still 'running' were left by a killed process: we hold the source's lock."""
        now = datetime.now(UTC)
        open_runs = select(SyncRun.id).where(SyncRun.source == self.name, SyncRun.status.in_(("queued", "running")))
        with self.app_db.session() as s:
            # Writes first: a SQLite transaction that read before writing fails at once when another
            # connection wrote meanwhile, where a first write waits (busy timeout).
            s.execute(update(SyncStreamStat).where(SyncStreamStat.run_id.in_(open_runs),
                                                   SyncStreamStat.status.in_(("queued", "running")))
                      .values(status="failed", error="interrupted"))
            marked = s.execute(update(SyncRun).where(SyncRun.id.in_(open_runs))
                               .values(status="failed", finished_at=now, error=INTERRUPTED,
                                       error_reason="interrupted")).rowcount
        if marked:
            log.warning("%s: marked %d interrupted run(s) as failed", self.name, marked)

    def _start(self) -> None:
        self.result.started_at = datetime.now(UTC)
        with self.app_db.session() as s:
            run = SyncRun(source=self.name, status="running", started_at=self.result.started_at)
            s.add(run)
            s.flush()
            self.result.run_id = run.id

    def _fail(self, exc: BaseException) -> None:
        cause = _source_error(exc)
        if isinstance(cause, SourceError):
            self.result.error, self.result.error_reason, self.result.fix = (
                cause.vendor_message, cause.reason, cause.fix)
        elif isinstance(cause, SophiaError):
            self.result.error, self.result.error_reason, self.result.fix = cause.message, cause.reason, cause.fix
        else:
            self.result.error, self.result.error_reason = f"{type(cause).__name__}: {cause}", "error"
        self.result.status = "failed"
        failing = _failing_resource(exc)
        for stream in self.result.streams.values():
            stream.status = "failed"
            stream.error = self.result.error if stream.stream == failing or failing is None else (
                f"not loaded: the sync stopped when stream {failing} failed")
        log.error("%s: sync failed: %s", self.name, self.result.error, exc_info=not isinstance(cause, SophiaError))

    def _finish(self) -> None:
        r = self.result
        r.finished_at = datetime.now(UTC)
        with self.app_db.session() as s:
            s.execute(update(SyncRun).where(SyncRun.id == r.run_id).values(
                status=r.status, finished_at=r.finished_at, error=r.error, error_reason=r.error_reason))
            for stream in r.streams.values():
                s.add(SyncStreamStat(run_id=r.run_id, stream=stream.stream, status=stream.status,
                                     rows_inserted=stream.rows_inserted, rows_updated=stream.rows_updated,
                                     rows_deleted=stream.rows_deleted, pages=stream.pages, retries=stream.retries,
                                     duration_s=stream.duration_s, error=stream.error))
            if r.status == "succeeded":
                for change in r.schema_changes:
                    s.add(SchemaEvent(source=self.name, stream=change.stream, column_name=change.column,
                                      change=change.change, old_type=change.old_type, new_type=change.new_type,
                                      at=r.finished_at))
                for summary in self._quarantine_summaries:
                    s.add(summary)

    # -- the sync itself --

    def _sync(self) -> None:
        spec = connector(self.name)
        observer = _Observer(self.bar)
        ctx = source_context(self.config, self.name, spec, self.settings, self.full_refresh)
        ctx.on_page, ctx.on_retry = observer.page, observer.retry
        streams = self._streams(spec)
        self.result.streams = {s: StreamResult(s) for s in streams}
        _configure_dlt()
        pipeline = dlt.pipeline(pipeline_name=f"sophia_{self.name}", pipelines_dir=str(self.settings.pipelines_dir),
                                destination=self.loader.destination(), dataset_name=f"raw_{self.name}")
        _no_telemetry()
        self._recover(pipeline)

        source = spec.source(ctx)
        if self.config.sources[self.name].streams:
            source = source.with_resources(*streams)
        naming = source.schema.naming
        schema_name = source.schema.name
        before = _columns(pipeline, schema_name)
        for resource in source.selected_resources.values():
            table = resource.table_name if isinstance(resource.table_name, str) else resource.name
            resource.add_map(observer.watch(resource.name, naming.normalize_identifier,
                                            dict(before.get(table, {}))))
        batch_pages(source)
        contract = FROZEN if self.config.sources[self.name].schema_changes == "freeze" else None
        pipeline.extract(source, refresh="drop_sources" if self.full_refresh else None, schema_contract=contract)
        pipeline.normalize()
        after = _columns(pipeline, schema_name)

        self.bar.loading()
        keys = {s.name: [naming.normalize_identifier(k) for k in s.primary_key] for s in spec.streams}
        tables = [s for s in streams if s in after]
        with self.loader.writer() as (destination, writer):
            snapped = {t: _snapshot_keys(writer, self.name, t, keys[t]) for t in tables}
            info = self._load(pipeline, destination)
            load_ids = list(info.loads_ids) if info is not None else []
            for table in tables:
                self._count(writer, table, keys[table], load_ids, snapped[table])
            self._write_quarantine(writer, ctx.quarantine)
        self.result.schema_changes = self._schema_changes(before, after, observer)
        for name, stream in self.result.streams.items():
            stream.pages, stream.records = observer.pages[name], observer.records[name]
            stream.retries, stream.duration_s = observer.retries[name], observer.duration(name)
        self.result.requests = sum(s.requests_sent for s in ctx.sessions)
        self.result.retries = sum(s.retries for s in ctx.sessions)
        self.result.answer_s = round(sum(s.answer_s for s in ctx.sessions), 3)
        self.result.paced_s = round(sum(s.paced_s for s in ctx.sessions), 3)

    def _load(self, pipeline: dlt.Pipeline, destination: Any) -> Any:
        """Load; when the destination refused the package for good, forget the local dlt state.

        dlt commits a run's cursors locally when it extracts, and with the data in the destination
        when it loads. If the package is aborted (a terminal job failure) the local cursors are ahead
        of the data: dropping the local folder makes the next run restore them from the destination,
        so it re-reads the window instead of skipping it. A transient failure keeps the package for the
        next run to finish, and the state with it.
        """
        try:
            return pipeline.load(destination=destination)
        except Exception:
            if not pipeline.list_normalized_load_packages():
                log.warning("%s: the raw store refused this run's data; its cursors are reset to the last "
                            "loaded state so the next run reads the same window again", self.name)
                pipeline.drop()
            raise

    def _streams(self, spec: Connector) -> list[str]:
        wanted = self.config.sources[self.name].streams
        declared = [s.name for s in spec.streams]
        if not wanted:
            return declared
        unknown = [s for s in wanted if s not in declared]
        if unknown:
            raise SourceConfigError(self.name, f"unknown stream(s) {', '.join(unknown)} in sources.{self.name}.streams",
                                    fix=f"valid streams: {', '.join(declared)}")
        return list(wanted)

    def _recover(self, pipeline: dlt.Pipeline) -> None:
        """Restore state if the local folder is gone; finish packages a killed run left on disk."""
        with self.loader.writer() as (destination, _writer):
            pipeline.sync_destination(destination=destination)
            _drop_committed_extracts(pipeline)
            if pipeline.list_extracted_load_packages():
                pipeline.normalize()
            pending = pipeline.list_normalized_load_packages()
            if pending:
                log.warning("%s: loading %d package(s) left by an interrupted sync", self.name, len(pending))
                pipeline.load(destination=destination)
                self.result.recovered_loads = len(pending)

    def _count(self, writer: RawWriter, table: str, key: list[str], load_ids: list[str], snapped: str | None) -> None:
        stream = self.result.streams[table]
        if not _table_exists(writer, f"raw_{self.name}", table) or not load_ids:
            _drop_temp(writer, snapped)
            return
        name = f'"raw_{self.name}"."{table}"'
        params = {f"l{i}": lid for i, lid in enumerate(load_ids)}
        in_load = f"_dlt_load_id IN ({', '.join(':' + p for p in params)})"
        after = _scalar(writer, f"SELECT count(*) FROM {name}")
        this_load = _scalar(writer, f"SELECT count(*) FROM {name} WHERE {in_load}", params)
        if snapped is None:
            before, updated = 0, 0
        else:
            match = " AND ".join(f'k."{c}" = r."{c}"' for c in key)
            before = _scalar(writer, f"SELECT count(*) FROM {snapped}")
            updated = _scalar(writer, f"SELECT count(*) FROM {name} r WHERE r.{in_load} AND EXISTS "
                                      f"(SELECT 1 FROM {snapped} k WHERE {match})", params)
            _drop_temp(writer, snapped)
        stream.rows_updated = updated
        stream.rows_inserted = this_load - updated
        stream.rows_deleted = before - (after - stream.rows_inserted)

    def _write_quarantine(self, writer: RawWriter, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        run_id = self.result.run_id
        table = pa.Table.from_pylist(
            [{"stream": r["stream"], "record_key": r["record_key"], "reason": r["reason"], "record": r["record"],
              "quarantined_at": r["quarantined_at"], "run_id": run_id} for r in rows],
            schema=pa.schema([("stream", pa.string()), ("record_key", pa.string()), ("reason", pa.string()),
                              ("record", pa.string()), ("quarantined_at", pa.timestamp("us", tz="UTC")),
                              ("run_id", pa.int64())]))
        writer.write_table(f"raw_{self.name}", QUARANTINE_TABLE, table, mode="append")
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[(row["stream"], _reason_label(row["reason"]))].append(row)
        location = f"raw_{self.name}.{QUARANTINE_TABLE} (run_id {run_id})"
        for (stream, reason), group in sorted(groups.items()):
            if stream in self.result.streams:
                self.result.streams[stream].quarantined += len(group)
            self._quarantine_summaries.append(QuarantineSummary(
                run_id=run_id, source=self.name, stream=stream, reason=reason, records=len(group),
                location=location, sample_keys=[str(r["record_key"]) for r in group[:5]]))

    def _schema_changes(self, before: dict[str, dict[str, str]], after: dict[str, dict[str, str]],
                        observer: _Observer) -> list[SchemaChange]:
        """Added, retyped (dlt variant column ``col__v_<type>``) and removed columns of existing tables.

        A column counts as removed when the stream delivered rows this run and none of them carried
        the field (it is absent from every page, not merely null); it is reported once, and reported
        as added again if it comes back. A stream's first sync reports nothing.
        """
        last = self._last_events()
        changes: list[SchemaChange] = []
        for table in self.result.streams:
            old, new = before.get(table), after.get(table, {})
            if old is None:
                continue
            for column, kind in new.items():
                if column in old or _internal(column):
                    continue
                variant = VARIANT.match(column)
                if variant and variant["base"] in old:
                    changes.append(SchemaChange(table, variant["base"], "retyped", old[variant["base"]],
                                                variant["type"]))
                else:
                    changes.append(SchemaChange(table, column, "added", None, kind))
            seen = observer.columns.get(table)
            if not seen:
                continue
            seen = seen | {m["base"] for m in map(VARIANT.match, seen) if m}  # a retyped column was carried
            for column, kind in old.items():
                if _internal(column) or VARIANT.match(column):
                    continue
                previous = last.get((table, column))
                if column not in seen and previous != "removed":
                    changes.append(SchemaChange(table, column, "removed", kind, None))
                elif column in seen and previous == "removed":
                    changes.append(SchemaChange(table, column, "added", None, kind))
        return changes

    def _last_events(self) -> dict[tuple[str, str], str]:
        with self.app_db.session() as s:
            rows = s.execute(select(SchemaEvent.stream, SchemaEvent.column_name, SchemaEvent.change)
                             .where(SchemaEvent.source == self.name).order_by(SchemaEvent.id)).all()
        return {(stream, column): change for stream, column, change in rows}


# --- helpers ------------------------------------------------------------------------------------------------


def _configure_dlt() -> None:
    """Process-wide dlt settings the sync relies on (idempotent)."""
    with _DLT_CONFIG_LOCK:
        # Arrow pages get _dlt_load_id too: the row counts of a load are read from it.
        dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
        # Nothing about customers' syncs leaves the machine (see _no_telemetry).
        dlt.config["runtime.dlthub_telemetry"] = False


def _no_telemetry() -> None:
    """Switch off dlt's anonymous usage events. dlt reads its runtime settings once, at import, so the setting
    above only holds where ``sophia_lib`` was imported before dlt (its ``__init__`` sets the variable);
    a process that imported dlt first gets its tracker switched off here, after the pipeline started it."""
    from dlt.common.runtime import anon_tracker

    anon_tracker.disable_anon_tracker()


def _drop_committed_extracts(pipeline: dlt.Pipeline) -> None:
    """Delete extracted packages that normalize already committed (dlt's "do not kill" window).

    dlt's normalize renames the finished package into the load storage and then deletes the extracted
    copy; a process killed between the two leaves both, and normalizing the copy again fails on the
    existing package ("Directory not empty") on every later run. The committed package is complete
    (the rename is atomic), so the extracted copy is the stale one.
    """
    committed = set(pipeline.list_normalized_load_packages()) | set(pipeline.list_completed_load_packages())
    for load_id in set(pipeline.list_extracted_load_packages()) & committed:
        log.warning("%s: removing extracted package %s, already normalized before an interruption",
                    pipeline.pipeline_name, load_id)
        pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)


def _columns(pipeline: dlt.Pipeline, schema_name: str) -> dict[str, dict[str, str]]:
    if schema_name not in pipeline.schema_names:
        return {}
    schema = copy.deepcopy(pipeline.schemas[schema_name])
    return {table: {name: str(col.get("data_type")) for name, col in schema.get_table_columns(table).items()}
            for table in schema.data_table_names()}


_ARROW_OF: dict[str, pa.DataType] = {
    "text": pa.string(), "bigint": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(),
}


def _variants(table: pa.Table, known: dict[str, str], normalize: Callable[[str], str]) -> pa.Table:
    """dlt's variant columns for Arrow pages, which dlt itself only makes for JSON rows.

    A page column whose type differs from the raw column's is cast to it when every value converts
    safely (``"5"`` into a bigint column); otherwise it is renamed ``<column>__v_<type>`` so the load
    never fails on vendor drift and the sync records a ``retyped`` schema event. Without this a single
    retyped value makes the destination refuse the whole load, on every run.
    """
    from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

    for i, name in enumerate(list(table.schema.names)):
        column = normalize(name)
        arrow = table.schema.field(i).type
        if pa.types.is_null(arrow):
            continue
        have = get_column_type_from_py_arrow(arrow).get("data_type")
        target = known.setdefault(column, have)  # the first page of a new column sets its type
        if have == target or target not in _ARROW_OF:
            continue
        try:
            table = table.set_column(i, name, table.column(i).cast(_ARROW_OF[target], safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            table = table.rename_columns([f"{column}__v_{have}" if j == i else n
                                          for j, n in enumerate(table.schema.names)])
    return table


def _internal(column: str) -> bool:
    return column.startswith("_dlt_") or column == DELETED_COLUMN


def _reason_label(reason: str) -> str:
    """A reason without the offending value: ``n: expected bigint, got 'x' (…)`` → ``n: expected bigint``."""
    return reason.split(", got ", 1)[0][:128]


def _scalar(writer: RawWriter, sql: str, params: dict[str, Any] | None = None) -> int:
    return int(writer.query(sql, params).column(0)[0].as_py())


def _table_exists(writer: RawWriter, schema: str, table: str) -> bool:
    return _scalar(writer, "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND table_name = :t",
                   {"s": schema, "t": table}) > 0


def _snapshot_keys(writer: RawWriter, source: str, table: str, key: list[str]) -> str | None:
    """Copy a table's primary keys to a temporary table (None when the table does not exist yet)."""
    if not _table_exists(writer, f"raw_{source}", table):
        return None
    temp = f'"_sophia_keys_{table}"'
    columns = ", ".join(f'"{c}"' for c in key)
    writer.execute(f"DROP TABLE IF EXISTS {temp}")
    writer.execute(f'CREATE TEMPORARY TABLE {temp} AS SELECT DISTINCT {columns} FROM "raw_{source}"."{table}"')
    return temp


def _drop_temp(writer: RawWriter, temp: str | None) -> None:
    if temp is not None:
        writer.execute(f"DROP TABLE IF EXISTS {temp}")


def _source_error(exc: BaseException) -> BaseException:
    """The SourceError (or other Sophia error) inside dlt's wrappers; else the innermost cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    innermost = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SophiaError):
            return current
        seen.add(id(current))
        innermost = current
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return innermost


def _failing_resource(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        name = getattr(current, "resource_name", None) or getattr(current, "pipe_name", None)
        if isinstance(name, str):
            return name
        seen.add(id(current))
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return None


def _write_holder(path: os.PathLike[str] | str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
    with contextlib.suppress(OSError), open(f"{path}.info", "w") as fh:
        json.dump(info, fh)


def _holder(path: os.PathLike[str] | str) -> str:
    try:
        with open(f"{path}.info") as fh:
            info = json.load(fh)
        return f"pid {info['pid']} on {info['host']} since {info['since'][:19]}"
    except (OSError, ValueError, KeyError):
        return f"lock {path} is held"


# --- entry point ---------------------------------------------------------------------------------------------


def run_sync(config: SophiaConfig, sources: list[str] | None = None, full_refresh: bool = False,
             progress: bool = True) -> list[SourceRunResult]:
    """Sync the enabled configured sources (or the named ones) into the raw store; one result per source.

    A source's failure is in its result (and the app DB), never raised; unknown names raise
    :class:`UnknownSourceError` before anything runs.
    """
    config = with_sandbox_sources(config)
    names = select_sources(config, sources)
    if not names:
        return []
    settings = SyncSettings.from_config(config)
    app_db = open_app_db(config)
    wh = open_warehouse(config)
    try:
        loader = _Loader(wh, settings)
        with SyncProgress(progress) as bars, ThreadPoolExecutor(
                max_workers=min(settings.parallelism, len(names)), thread_name_prefix="sophia-sync") as pool:
            jobs = [SourceSync(config, name, settings, app_db, loader, bars.source(name), full_refresh)
                    for name in names]
            futures = [pool.submit(job.run) for job in jobs]
            return [future.result() for future in futures]
    finally:
        wh.close()
        app_db.close()


__all__ = ["SchemaChange", "SourceRunResult", "SourceSync", "StreamResult", "run_sync", "select_sources",
           "source_context"]
