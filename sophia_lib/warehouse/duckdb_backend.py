"""DuckDB warehouse: a folder of files, one writing process at a time, readers on immutable snapshots.

Layout of the folder (``duckdb:////abs/var/warehouse``)::

    raw.duckdb              raw_* tables; opened read-write only under writer.lock
    writer.lock             filelock: the one writer (sync or publish) holds it
    snapshots/<id>.duckdb   published serving snapshots, never written after they are renamed in
    CURRENT                 JSON {id, as_of, published_at, file}: the snapshot readers open

Publish builds ``snapshots/.<id>.duckdb.tmp`` (raw_* copied from raw.duckdb ATTACHed read-only,
then the caller's core/marts, then ``sophia_meta.snapshot``), checkpoints and closes it, fsyncs,
renames it into place and flips CURRENT with ``os.replace`` (then fsyncs the folder). Readers read
CURRENT and open that file ``read_only``; an open file stays readable even after pruning unlinks
it, and a reader that finds its file gone re-reads CURRENT (the pruned file is never the current
one). Pruning keeps the newest ``keep_snapshots`` plus the current one, and only removes a file
``prune_grace_s`` after it was superseded.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from filelock import FileLock, Timeout
from sqlalchemy.engine import make_url

from sophia_lib.errors import ConfigError, SnapshotError, WarehouseError, WriterBusyError
from sophia_lib.warehouse.base import (
    BIND_PARAM,
    NO_SNAPSHOT_FIX,
    RAW_PREFIX,
    SERVING_SCHEMAS,
    RawWriter,
    Reader,
    SnapshotBuilder,
    SnapshotInfo,
    TBuild,
    TParams,
    TWriteMode,
    Warehouse,
    check_raw_schema,
    check_serving_schema,
    new_snapshot_id,
    pick_prunable,
    qualified,
    quote,
    rollback_target,
    tag,
    to_arrow,
    utc,
)

POINTER_FIX = ("run `sophia warehouse rollback` (repoints to the newest good snapshot) "
               "or `sophia warehouse publish`")
READ_ATTEMPTS = 3


def _sql(sql: str, params: TParams) -> tuple[str, dict[str, Any] | None]:
    """``:name`` parameters become DuckDB's ``$name``."""
    if not params:
        return sql, None
    return BIND_PARAM.sub(r"$\1", sql), dict(params)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: TParams, where: str) -> duckdb.DuckDBPyConnection:
    text, values = _sql(sql, params)
    try:
        return con.execute(text, values) if values else con.execute(text)
    except duckdb.Error as exc:
        raise WarehouseError(f"SQL failed {where}: {exc}", fix="correct the statement") from exc


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: TParams, where: str) -> pa.Table:
    text, values = _sql(sql, params)
    try:
        rel = con.sql(text, params=values)
        return pa.table({}) if rel is None else rel.to_arrow_table()
    except duckdb.Error as exc:
        raise WarehouseError(f"SQL failed {where}: {exc}", fix="correct the statement") from exc


def _write(con: duckdb.DuckDBPyConnection, schema: str, table: str, data: Any, mode: TWriteMode) -> int:
    arrow = to_arrow(data)
    name = qualified(schema, table)
    view = "__sophia_incoming"
    con.register(view, arrow)
    try:
        con.execute("BEGIN")
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        if mode == "replace":
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {view}")
        elif mode == "append":
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {view} LIMIT 0")
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")
        else:
            raise WarehouseError(f"unknown write mode {mode!r}.", fix="use mode='replace' or mode='append'")
        con.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if isinstance(exc, duckdb.Error):
            raise WarehouseError(f"writing {schema}.{table} failed: {exc}",
                                 fix="check the data's columns and types against the existing table") from exc
        raise
    finally:
        con.unregister(view)
    return arrow.num_rows


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DuckDBRawWriter(RawWriter):
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def write_table(self, schema: str, table: str, data: Any, mode: TWriteMode = "replace") -> int:
        return _write(self._con, check_raw_schema(schema), table, data, mode)

    def execute(self, sql: str, params: TParams = None) -> None:
        _run(self._con, sql, params, "in the raw store")

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return _fetch(self._con, sql, params, "in the raw store")

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The raw store's connection (e.g. for ``dlt.destinations.duckdb(credentials=…)``)."""
        return self._con


class DuckDBSnapshotBuilder(SnapshotBuilder):
    def __init__(self, con: duckdb.DuckDBPyConnection, snapshot_id: str, as_of: datetime) -> None:
        self._con = con
        self.snapshot_id = snapshot_id
        self.as_of = as_of

    def write_table(self, schema: str, table: str, data: Any) -> int:
        return _write(self._con, check_serving_schema(schema), table, data, "replace")

    def execute(self, sql: str, params: TParams = None) -> None:
        _run(self._con, sql, params, f"building snapshot {self.snapshot_id}")

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return _fetch(self._con, sql, params, f"building snapshot {self.snapshot_id}")


class DuckDBReader(Reader):
    def __init__(self, con: duckdb.DuckDBPyConnection, snapshot: SnapshotInfo) -> None:
        self._con = con
        self.snapshot = snapshot

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return tag(_fetch(self._con, sql, params, f"reading snapshot {self.snapshot.id}"), self.snapshot)


class Backend(Warehouse):
    """DuckDB files under one folder."""

    name = "duckdb"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        database = make_url(url).database
        if not database or database == ":memory:":
            raise ConfigError(f"the DuckDB warehouse URL {url!r} names no folder.",
                              fix="write warehouse.url as duckdb:////absolute/folder "
                                  "(or unset it for var/warehouse)")
        self.dir = Path(database).expanduser().absolute()
        self.raw_path = self.dir / "raw.duckdb"
        self.snap_dir = self.dir / "snapshots"
        self.pointer = self.dir / "CURRENT"
        self.lock_path = self.dir / "writer.lock"

    @property
    def location(self) -> str:
        return str(self.dir)

    # ---- writer side ----------------------------------------------------------------------------

    def _ensure_writable(self) -> None:
        try:
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.dir, prefix=".probe-"):
                pass
        except OSError as exc:
            raise WarehouseError(
                f"the warehouse folder {self.dir} is not writable ({exc.strerror or exc}).",
                fix="make it writable by this user (chown/chmod), or point var_dir (SOPHIA_VAR_DIR) or "
                    "warehouse.url (SOPHIA_WAREHOUSE__URL) at a writable folder",
            ) from None

    @contextlib.contextmanager
    def _writer_lock(self, timeout: float) -> Iterator[None]:
        self._ensure_writable()
        lock = FileLock(self.lock_path, timeout=timeout)
        try:
            lock.acquire()
        except Timeout:
            raise WriterBusyError(
                f"another process is writing the warehouse at {self.dir} (lock {self.lock_path} is held).",
                fix="wait for the running sync or publish to finish and retry, or pass a longer timeout; "
                    "the lock is released when that process exits",
            ) from None
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def raw_writer(self, timeout: float = 10.0) -> Iterator[DuckDBRawWriter]:
        with self._writer_lock(timeout):
            con = duckdb.connect(str(self.raw_path))
            try:
                yield DuckDBRawWriter(con)
                con.execute("CHECKPOINT")
            finally:
                con.close()

    def publish(self, build: TBuild | None = None, as_of: datetime | None = None,
                timeout: float = 10.0) -> SnapshotInfo:
        with self._writer_lock(timeout):
            for stale in self.snap_dir.glob(".*.tmp*"):  # a crashed build; we hold the lock
                stale.unlink(missing_ok=True)
            published_at = datetime.now(UTC)
            sid = new_snapshot_id(published_at, set(self._snapshot_files()))
            as_of = utc(as_of) if as_of else published_at
            tmp = self.snap_dir / f".{sid}.duckdb.tmp"
            con = duckdb.connect(str(tmp))
            try:
                self._copy_raw(con)
                for schema in SERVING_SCHEMAS:
                    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                if build is not None:
                    build(DuckDBSnapshotBuilder(con, sid, as_of))
                con.execute("CREATE SCHEMA IF NOT EXISTS sophia_meta")
                con.execute("CREATE OR REPLACE TABLE sophia_meta.snapshot "
                            "(id VARCHAR, as_of TIMESTAMPTZ, published_at TIMESTAMPTZ)")
                con.execute("INSERT INTO sophia_meta.snapshot VALUES (?, ?, ?)", [sid, as_of, published_at])
                con.execute("CHECKPOINT")
            except BaseException:
                con.close()
                tmp.unlink(missing_ok=True)
                Path(f"{tmp}.wal").unlink(missing_ok=True)
                raise
            con.close()
            final = self.snap_dir / f"{sid}.duckdb"
            _fsync(tmp)
            os.rename(tmp, final)
            _fsync(self.snap_dir)
            info = SnapshotInfo(sid, as_of, published_at, final.stat().st_size, current=True)
            self._write_pointer(info)
            self._prune(sid)
            return info

    def _copy_raw(self, con: duckdb.DuckDBPyConnection) -> None:
        if not self.raw_path.exists():
            return
        path = str(self.raw_path).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS raw_store (READ_ONLY)")
        try:
            tables = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = 'raw_store' AND starts_with(schema_name, ?) "
                "AND NOT ends_with(schema_name, '_staging') ORDER BY 1, 2",  # dlt's merge scratch space
                [RAW_PREFIX],
            ).fetchall()
            for schema, table in tables:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
                name = quote(schema, table)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM raw_store.{name}")
        finally:
            con.execute("DETACH raw_store")

    def _write_pointer(self, info: SnapshotInfo) -> None:
        body = {"id": info.id, "as_of": info.as_of.isoformat(), "published_at": info.published_at.isoformat(),
                "file": f"{info.id}.duckdb"}
        tmp = self.dir / ".CURRENT.tmp"
        with open(tmp, "w") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.pointer)
        _fsync(self.dir)

    def _prune(self, current: str) -> None:
        files = self._snapshot_files()
        ids = sorted(files)
        now = datetime.now(UTC).timestamp()
        for sid in pick_prunable(ids, current, self.keep_snapshots):
            successor = ids[ids.index(sid) + 1]
            superseded_at = files[successor].stat().st_mtime
            if now - superseded_at >= self.prune_grace_s:
                files[sid].unlink(missing_ok=True)

    def rollback(self, to: str | None = None, timeout: float = 10.0) -> SnapshotInfo:
        with self._writer_lock(timeout):
            try:
                current = self._read_pointer()["id"]
            except SnapshotError:
                current = None
            good = {s.id: s for s in self._list()}
            target = rollback_target(sorted(good), current, to)
            info = good[target]
            self._write_pointer(info)
            return SnapshotInfo(info.id, info.as_of, info.published_at, info.size_bytes, current=True)

    # ---- reader side ----------------------------------------------------------------------------

    def _snapshot_files(self) -> dict[str, Path]:
        if not self.snap_dir.is_dir():
            return {}
        return {p.name.removesuffix(".duckdb"): p for p in self.snap_dir.glob("[!.]*.duckdb")}

    def _read_pointer(self) -> dict[str, str]:
        try:
            text = self.pointer.read_text()
        except FileNotFoundError:
            if self._snapshot_files():
                raise SnapshotError(f"the pointer {self.pointer} to the current snapshot is missing.",
                                    fix=POINTER_FIX) from None
            raise SnapshotError(f"no snapshot published yet in {self.dir}.", fix=NO_SNAPSHOT_FIX) from None
        except OSError as exc:
            raise SnapshotError(f"cannot read the pointer {self.pointer}: {exc.strerror}.",
                                fix="check the folder's permissions") from None
        try:
            body = json.loads(text)
            if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("id", "file")):
                raise ValueError("missing id/file")
            if "/" in body["file"] or body["file"].startswith("."):
                raise ValueError("bad file name")
        except ValueError:
            raise SnapshotError(f"the pointer {self.pointer} to the current snapshot is corrupted.",
                                fix=POINTER_FIX) from None
        return body

    @staticmethod
    def _meta(con: duckdb.DuckDBPyConnection) -> tuple[str, datetime, datetime]:
        rows = con.execute(
            "SELECT id, epoch_us(as_of), epoch_us(published_at) FROM sophia_meta.snapshot").fetchall()
        if len(rows) != 1:
            raise duckdb.CatalogException("sophia_meta.snapshot must hold one row")
        row = rows[0]

        def ts(us: int) -> datetime:
            return datetime.fromtimestamp(us / 1e6, UTC)

        return row[0], ts(row[1]), ts(row[2])

    def _open(self, path: Path) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(path), read_only=True)

    def _open_current(self) -> tuple[duckdb.DuckDBPyConnection, SnapshotInfo]:
        for attempt in range(READ_ATTEMPTS):
            body = self._read_pointer()
            path = self.snap_dir / body["file"]
            try:
                con = self._open(path)
            except duckdb.Error as exc:
                if path.exists():
                    raise SnapshotError(f"the current snapshot {path} cannot be opened: {exc}",
                                        fix=POINTER_FIX) from None
                if attempt + 1 < READ_ATTEMPTS:
                    continue  # pruned between reading CURRENT and opening: CURRENT has moved on
                raise SnapshotError(f"the pointer {self.pointer} names {body['file']}, which does not exist.",
                                    fix=POINTER_FIX) from None
            try:
                sid, as_of, published_at = self._meta(con)
            except duckdb.Error:
                con.close()
                raise SnapshotError(f"{path} is not a Sophia snapshot (no sophia_meta.snapshot).",
                                    fix=POINTER_FIX) from None
            if sid != body["id"]:
                con.close()
                raise SnapshotError(f"the pointer says snapshot {body['id']} but {path} holds {sid}.",
                                    fix=POINTER_FIX)
            return con, SnapshotInfo(sid, as_of, published_at, path.stat().st_size, current=True)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def reader(self) -> Iterator[DuckDBReader]:
        con, info = self._open_current()
        try:
            yield DuckDBReader(con, info)
        finally:
            con.close()

    def _list(self) -> list[SnapshotInfo]:
        """Readable snapshots (unreadable or vanished files are skipped), oldest first."""
        out = []
        for sid, path in sorted(self._snapshot_files().items()):
            try:
                con = self._open(path)
            except duckdb.Error:
                continue
            try:
                meta_id, as_of, published_at = self._meta(con)
            except duckdb.Error:
                continue
            finally:
                con.close()
            if meta_id == sid:
                with contextlib.suppress(OSError):
                    out.append(SnapshotInfo(sid, as_of, published_at, path.stat().st_size))
        return out

    def snapshots(self) -> list[SnapshotInfo]:
        try:
            current = self._read_pointer()["id"]
        except SnapshotError:
            current = None
        return [SnapshotInfo(s.id, s.as_of, s.published_at, s.size_bytes, current=s.id == current)
                for s in self._list()]

    def raw_tables(self) -> tuple[dict[str, dict[str, int]], str]:
        """Live counts when the writer lock is free; else the copies in the current snapshot."""
        try:
            lock = FileLock(self.lock_path, timeout=0)
            lock.acquire()
        except (Timeout, OSError):
            lock = None
        if lock is not None:
            try:
                if not self.raw_path.exists():
                    return {}, "live"
                con = self._open(self.raw_path)
                try:
                    return self._count_raw(con), "live"
                finally:
                    con.close()
            finally:
                lock.release()
        try:
            with self.reader() as r:
                return self._count_raw(r._con), f"snapshot {r.snapshot.id} (writer busy)"
        except SnapshotError:
            return {}, "unavailable (writer busy, no snapshot)"

    @staticmethod
    def _count_raw(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
        rows = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE starts_with(schema_name, ?) AND NOT ends_with(schema_name, '_staging') "
            "AND database_name = current_database() ORDER BY 1, 2",
            [RAW_PREFIX],
        ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for schema, table in rows:
            [(count,)] = con.execute(f"SELECT count(*) FROM {quote(schema, table)}").fetchall()
            out.setdefault(schema, {})[table] = count
        return out
