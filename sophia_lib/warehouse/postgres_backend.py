"""PostgreSQL warehouse: raw_*, core and marts in one database; publish swaps schemas in one transaction.

Publish runs in ONE transaction on the writer's connection (which also holds the writer advisory
lock): it renames the live ``core``/``marts`` to ``core__<id>``/``marts__<id>`` (backups of the
snapshot that was current), creates fresh ``core``/``marts`` and lets the build fill them — inside
the transaction the build sees its new schemas under their live names, while every other session
still sees the old ones, because none of it is committed. It then records the snapshot in
``sophia_meta.snapshot``, drops backups beyond ``keep_snapshots``, takes ``sophia_meta.current``
in ACCESS EXCLUSIVE mode, points it at the new id and commits.

Readers run in a ``REPEATABLE READ READ ONLY`` transaction whose first statement is
``LOCK TABLE sophia_meta.current IN ACCESS SHARE MODE`` (taken before the snapshot, as the
PostgreSQL manual prescribes), so no swap can commit while a reader runs and the reader's data
snapshot and its view of the catalog agree: every read in a ``with wh.reader()`` block sees exactly
one published refresh. The writer takes its exclusive lock with a short, growing ``lock_timeout``
and retries, so a reader waits at most that long behind a swap (milliseconds in practice).

Rollback is the same swap with a backup renamed back to the live names.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql as psql
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from sophia_lib.errors import SnapshotError, WarehouseError, WriterBusyError
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
from sophia_lib.warehouse.pg_types import create_columns, rows_to_arrow, to_csv

WRITER_LOCK_KEY = 0x50F1A_0001  # pg advisory lock id of "the warehouse writer" (per database)
CONNECT_TIMEOUT_S = 5
SWAP_TIMEOUT_S = 120.0
META_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sophia_meta",
    "CREATE TABLE IF NOT EXISTS sophia_meta.snapshot (id text PRIMARY KEY, as_of timestamptz NOT NULL, "
    "published_at timestamptz NOT NULL, size_bytes bigint)",
    "CREATE TABLE IF NOT EXISTS sophia_meta.current (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
    "id text NOT NULL)",
]
POINTER_FIX = ("run `sophia warehouse rollback` (repoints to the newest kept snapshot) "
               "or `sophia warehouse publish`")


def _sql(sql: str, params: TParams) -> tuple[str, dict[str, Any] | None]:
    """``:name`` parameters become psycopg's ``%(name)s``; literal ``%`` is escaped when params are used."""
    if not params:
        return sql, None
    return BIND_PARAM.sub(r"%(\1)s", sql.replace("%", "%%")), dict(params)


def _fetch(conn: psycopg.Connection, sql: str, params: TParams, where: str) -> pa.Table:
    text, values = _sql(sql, params)
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint inside a reader/build transaction
            cur.execute(text, values)
            if cur.description is None:
                return pa.table({})
            names = [d.name for d in cur.description]
            oids = [d.type_code for d in cur.description]
            return rows_to_arrow(names, oids, cur.fetchall())
    except psycopg.Error as exc:
        raise WarehouseError(f"SQL failed {where}: {str(exc).strip()}", fix="correct the statement") from exc


def _execute(conn: psycopg.Connection, sql: str, params: TParams, where: str) -> None:
    text, values = _sql(sql, params)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(text, values)
    except psycopg.Error as exc:
        raise WarehouseError(f"SQL failed {where}: {str(exc).strip()}", fix="correct the statement") from exc


def _write(conn: psycopg.Connection, schema: str, table: str, data: Any, mode: TWriteMode) -> int:
    arrow = to_arrow(data)
    if mode not in ("replace", "append"):
        raise WarehouseError(f"unknown write mode {mode!r}.", fix="use mode='replace' or mode='append'")
    name = qualified(schema, table)
    columns = create_columns(arrow.schema)
    payload = to_csv(arrow)
    col_list = ", ".join(f'"{f.name}"' for f in arrow.schema)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            if mode == "replace":
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
            if payload:
                with cur.copy(f"COPY {name} ({col_list}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(payload)
    except psycopg.Error as exc:
        raise WarehouseError(f"writing {schema}.{table} failed: {str(exc).strip()}",
                             fix="check the data's columns and types against the existing table") from exc
    return arrow.num_rows


class PostgresRawWriter(RawWriter):
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def write_table(self, schema: str, table: str, data: Any, mode: TWriteMode = "replace") -> int:
        return _write(self._conn, check_raw_schema(schema), table, data, mode)

    def execute(self, sql: str, params: TParams = None) -> None:
        _execute(self._conn, sql, params, "in the raw store")

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return _fetch(self._conn, sql, params, "in the raw store")


class PostgresSnapshotBuilder(SnapshotBuilder):
    def __init__(self, conn: psycopg.Connection, snapshot_id: str, as_of: datetime) -> None:
        self._conn = conn
        self.snapshot_id = snapshot_id
        self.as_of = as_of

    def write_table(self, schema: str, table: str, data: Any) -> int:
        return _write(self._conn, check_serving_schema(schema), table, data, "replace")

    def execute(self, sql: str, params: TParams = None) -> None:
        _execute(self._conn, sql, params, f"building snapshot {self.snapshot_id}")

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return _fetch(self._conn, sql, params, f"building snapshot {self.snapshot_id}")


class PostgresReader(Reader):
    def __init__(self, conn: psycopg.Connection, snapshot: SnapshotInfo) -> None:
        self._conn = conn
        self.snapshot = snapshot

    def query(self, sql: str, params: TParams = None) -> pa.Table:
        return tag(_fetch(self._conn, sql, params, f"reading snapshot {self.snapshot.id}"), self.snapshot)


def _snapshot(row: tuple[Any, ...], current: bool) -> SnapshotInfo:
    sid, as_of, published_at, size = row
    return SnapshotInfo(sid, as_of.astimezone(UTC), published_at.astimezone(UTC), size, current)


class Backend(Warehouse):
    """One PostgreSQL database."""

    name = "postgresql"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        parsed: URL = make_url(url)
        if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if self.password:
            parsed = parsed.set(password=self.password)
        self._url = parsed
        self.engine = create_engine(parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
                                    pool_pre_ping=True, pool_size=2, max_overflow=8)

    @property
    def location(self) -> str:
        u = self._url
        user = f"{u.username}@" if u.username else ""
        return f"postgresql://{user}{u.host or 'localhost'}:{u.port or 5432}/{u.database}"

    def close(self) -> None:
        self.engine.dispose()

    # ---- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled psycopg connection in autocommit mode (callers open transactions explicitly)."""
        try:
            proxied = self.engine.raw_connection()
        except (DBAPIError, psycopg.Error) as exc:
            u = self._url
            detail = str(getattr(exc, "orig", None) or exc).strip()
            reason = detail.splitlines()[0] if detail else "no answer"
            raise WarehouseError(
                f"cannot connect to the PostgreSQL warehouse at {u.host or 'localhost'}:{u.port or 5432} "
                f"(database {u.database!r}): {reason}",
                fix="start the server or correct warehouse.url (SOPHIA_WAREHOUSE__URL): host, port and "
                    "database; check the firewall and, if it needs one, the password secret "
                    "(warehouse.password)",
            ) from None
        conn: psycopg.Connection = proxied.driver_connection
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            conn.read_only = None
            conn.isolation_level = None
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            proxied.close()

    @contextlib.contextmanager
    def _writer(self, timeout: float) -> Iterator[psycopg.Connection]:
        with self._connection() as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", [WRITER_LOCK_KEY]).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise WriterBusyError(
                        f"another process is writing the warehouse at {self.location} "
                        f"(advisory lock {WRITER_LOCK_KEY} is held).",
                        fix="wait for the running sync or publish to finish and retry, or pass a longer "
                            "timeout; the lock is released when that session ends",
                    )
                time.sleep(0.05)
            try:
                for ddl in META_DDL:
                    conn.execute(ddl)
                yield conn
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                    conn.execute("SELECT pg_advisory_unlock(%s)", [WRITER_LOCK_KEY])

    @contextlib.contextmanager
    def raw_writer(self, timeout: float = 10.0) -> Iterator[PostgresRawWriter]:
        with self._writer(timeout) as conn:
            yield PostgresRawWriter(conn)

    # ---- publish / rollback ---------------------------------------------------------------------

    @staticmethod
    def _schemas(conn: psycopg.Connection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}

    @staticmethod
    def _current_id(conn: psycopg.Connection) -> str | None:
        row = conn.execute("SELECT id FROM sophia_meta.current").fetchone()
        return row[0] if row else None

    @staticmethod
    def _rename(conn: psycopg.Connection, old: str, new: str) -> None:
        rename = psql.SQL("ALTER SCHEMA {} RENAME TO {}")
        conn.execute(rename.format(psql.Identifier(old), psql.Identifier(new)))

    def _retire_live(self, conn: psycopg.Connection, current: str | None, suffix: str) -> None:
        """Rename the live core/marts to the backup names of the snapshot they belong to."""
        schemas = self._schemas(conn)
        for schema in SERVING_SCHEMAS:
            if schema in schemas:
                backup = f"{schema}__{current}" if current else f"{schema}__unpublished_{suffix}"
                if backup in schemas:  # left over from an interrupted history: keep the live one's data
                    backup = f"{backup}_{suffix}"
                self._rename(conn, schema, backup)

    def _flip(self, conn: psycopg.Connection, sid: str) -> None:
        """Take the pointer exclusively (short, growing lock_timeout so readers wait at most that long)."""
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        wait_ms = 100
        while True:
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = '{wait_ms}ms'")
                    conn.execute("LOCK TABLE sophia_meta.current IN ACCESS EXCLUSIVE MODE")
                break
            except psycopg.errors.LockNotAvailable:
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"could not swap in snapshot {sid}: readers held the current snapshot for "
                        f"{SWAP_TIMEOUT_S:.0f} s.",
                        fix="retry the publish; look for very long-running queries (pg_stat_activity)",
                    ) from None
                wait_ms = min(wait_ms * 2, 2000)
        conn.execute("SET LOCAL lock_timeout = 0")
        conn.execute("INSERT INTO sophia_meta.current (one, id) VALUES (true, %s) "
                     "ON CONFLICT (one) DO UPDATE SET id = excluded.id", [sid])

    def _size(self, conn: psycopg.Connection) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm')",
            [list(SERVING_SCHEMAS)],
        ).fetchone()
        return int(row[0])

    def _prune(self, conn: psycopg.Connection, current: str) -> None:
        ids = [r[0] for r in conn.execute("SELECT id FROM sophia_meta.snapshot")]
        for sid in pick_prunable(ids, current, self.keep_snapshots):
            try:
                with conn.transaction():  # savepoint: a backup someone is reading is kept for next time
                    conn.execute("SET LOCAL lock_timeout = '1s'")
                    for schema in SERVING_SCHEMAS:
                        conn.execute(psql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                                     .format(psql.Identifier(f"{schema}__{sid}")))
                    conn.execute("DELETE FROM sophia_meta.snapshot WHERE id = %s", [sid])
            except psycopg.errors.LockNotAvailable:
                continue
        conn.execute("SET LOCAL lock_timeout = 0")

    def publish(self, build: TBuild | None = None, as_of: datetime | None = None,
                timeout: float = 10.0) -> SnapshotInfo:
        with self._writer(timeout) as conn:
            published_at = datetime.now(UTC)
            taken = {r[0] for r in conn.execute("SELECT id FROM sophia_meta.snapshot")}
            sid = new_snapshot_id(published_at, taken)
            as_of = utc(as_of) if as_of else published_at
            with conn.transaction():
                self._retire_live(conn, self._current_id(conn), sid)
                for schema in SERVING_SCHEMAS:
                    conn.execute(f'CREATE SCHEMA "{schema}"')
                if build is not None:
                    build(PostgresSnapshotBuilder(conn, sid, as_of))
                size = self._size(conn)
                conn.execute("INSERT INTO sophia_meta.snapshot VALUES (%s, %s, %s, %s)",
                             [sid, as_of, published_at, size])
                self._prune(conn, sid)
                self._flip(conn, sid)
            return SnapshotInfo(sid, as_of, published_at, size, current=True)

    def rollback(self, to: str | None = None, timeout: float = 10.0) -> SnapshotInfo:
        with self._writer(timeout) as conn, conn.transaction():
            rows = {r[0]: r for r in conn.execute(
                "SELECT id, as_of, published_at, size_bytes FROM sophia_meta.snapshot")}
            current = self._current_id(conn)
            target = rollback_target(sorted(rows), current if current in rows else None, to)
            if target == current:
                return _snapshot(rows[target], True)
            schemas = self._schemas(conn)
            missing = [s for s in SERVING_SCHEMAS if f"{s}__{target}" not in schemas]
            if missing:
                raise SnapshotError(
                    f"snapshot {target} cannot be restored: schema {missing[0]}__{target} is gone.",
                    fix="pick another id from `sophia warehouse status`, or run `sophia warehouse publish`",
                )
            self._retire_live(conn, current, target)
            for schema in SERVING_SCHEMAS:
                self._rename(conn, f"{schema}__{target}", schema)
            self._flip(conn, target)
            return _snapshot(rows[target], True)

    # ---- readers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[PostgresReader]:
        with self._connection() as conn:
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                try:
                    # Before any SELECT, so the transaction's snapshot is taken after no swap can commit.
                    conn.execute("LOCK TABLE sophia_meta.current IN ACCESS SHARE MODE")
                except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                    raise SnapshotError(f"no snapshot published yet in {self.location}.",
                                        fix=NO_SNAPSHOT_FIX) from None
                row = conn.execute(
                    "SELECT c.id, s.id, s.as_of, s.published_at, s.size_bytes FROM sophia_meta.current c "
                    "LEFT JOIN sophia_meta.snapshot s ON s.id = c.id").fetchone()
                if row is None:
                    raise SnapshotError(f"no snapshot published yet in {self.location}.", fix=NO_SNAPSHOT_FIX)
                if row[1] is None:
                    raise SnapshotError(f"the current snapshot {row[0]} has no record in "
                                        "sophia_meta.snapshot.", fix=POINTER_FIX)
                yield PostgresReader(conn, _snapshot(row[1:], True))
            finally:
                conn.rollback()
                conn.read_only = None
                conn.isolation_level = None
                conn.autocommit = True

    def snapshots(self) -> list[SnapshotInfo]:
        with self._connection() as conn:
            try:
                current = self._current_id(conn)
                rows = conn.execute("SELECT id, as_of, published_at, size_bytes FROM sophia_meta.snapshot "
                                    "ORDER BY id").fetchall()
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                return []
            return [_snapshot(r, r[0] == current) for r in rows]

    def raw_tables(self) -> tuple[dict[str, dict[str, int]], str]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE starts_with(table_schema, %s) AND NOT table_schema LIKE '%%\\_staging' "
                "AND table_type = 'BASE TABLE' ORDER BY 1, 2",
                [RAW_PREFIX]).fetchall()
            out: dict[str, dict[str, int]] = {}
            for schema, table in tables:
                (count,) = conn.execute(f"SELECT count(*) FROM {quote(schema, table)}").fetchone()
                out.setdefault(schema, {})[table] = count
            return out, "live"
