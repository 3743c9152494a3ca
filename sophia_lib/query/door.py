"""The query door itself: one request from one verified identity → policy, guard, cache, warehouse,
audit → an Arrow IPC body stamped with its snapshot.

Independent of HTTP (the tornado service in :mod:`.service` calls :meth:`QueryDoor.run` on worker
threads), so tests and benchmarks can drive it directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from sophia_lib.audit import AuditEvent, AuditLog, AuditWriter
from sophia_lib.config.typing import SophiaConfig
from sophia_lib.errors import SnapshotError, SophiaError, WarehouseError
from sophia_lib.query.cache import ResultCache, cache_key, open_cache
from sophia_lib.query.errors import BadQueryError, ForbiddenError, QueryError, ServiceUnavailableError
from sophia_lib.query.guard import Catalog, GuardedQuery, TDialect, guard, quote_ident
from sophia_lib.query.identity import Identity
from sophia_lib.query.policy import Policy, PolicyScope, load_policy
from sophia_lib.query.readers import ReaderPool
from sophia_lib.warehouse import open_warehouse

TKind = Literal["sql", "table", "metric"]
DATASET = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
GUARD_MEMO = 4096


@dataclass
class QueryRequest:
    """What a client asks for (the JSON body of POST /api/<kind>)."""

    kind: TKind
    sql: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    columns: list[str] | None = None
    limit: int | None = None
    by: list[str] = field(default_factory=list)
    grain: str | None = None
    start: str | None = None
    end: str | None = None
    where: str | dict[str, Any] | None = None

    @classmethod
    def from_json(cls, kind: TKind, body: Mapping[str, Any]) -> QueryRequest:
        allowed = {"sql": {"sql", "params"}, "table": {"name", "columns", "limit"},
                   "metric": {"name", "by", "grain", "start", "end", "where", "params"}}[kind]
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadQueryError(f"unknown field(s) {', '.join(unknown)} for a {kind} request.",
                                fix=f"send only {', '.join(sorted(allowed))}")
        request = cls(kind=kind, **{k: v for k, v in body.items() if v is not None})
        request.validate()
        return request

    def validate(self) -> None:
        if self.kind == "sql" and not isinstance(self.sql, str):
            raise BadQueryError("a sql request needs 'sql': the SELECT to run.", fix="sl.sql('select …')")
        if not isinstance(self.params, dict):
            raise BadQueryError("'params' must be an object of name → value.", fix="params={'region': 'emea'}")
        if self.kind == "table":
            if not isinstance(self.name, str) or not DATASET.match(self.name.lower()):
                raise BadQueryError(f"table name {self.name!r} must be schema.table, e.g. core.accounts.",
                                    fix="sl.tables() lists the tables your role may read")
            if self.columns is not None and (not isinstance(self.columns, list) or not all(
                    isinstance(c, str) and IDENT.match(c.lower()) for c in self.columns)):
                raise BadQueryError("'columns' must be a list of column names.", fix="columns=['name', 'region']")
            if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
                raise BadQueryError("'limit' must be a non-negative integer.", fix="limit=1000")
        if self.kind == "metric":
            if not isinstance(self.name, str) or not self.name:
                raise BadQueryError("a metric request needs 'name'.", fix="sl.metric('pipeline_value')")
            if not isinstance(self.by, list) or not all(isinstance(b, str) for b in self.by):
                raise BadQueryError("'by' must be a list of dimension names.", fix="by=['stage']")
            if self.where is not None and not isinstance(self.where, str | dict):
                raise BadQueryError("'where' must be a condition string or an object of dimension → value(s).",
                                    fix="where={'region': 'EMEA'}")

    def describe(self) -> str:
        """The dataset or metric named, for the audit log."""
        return self.name if self.kind in ("table", "metric") and self.name else "sql"

    def memo_key(self) -> str:
        return json.dumps([self.kind, self.sql, self.params, self.name, self.columns, self.limit, self.by,
                           self.grain, self.start, self.end, self.where], sort_keys=True, default=str)


@dataclass
class QueryResult:
    """An Arrow IPC stream body and what the service reports with it."""

    body: bytes
    snapshot_id: str
    as_of: str
    rows: int
    columns: list[str]
    cached: bool
    duration_ms: float


class QueryDoor:
    """Owns the warehouse readers, the policy, the cache and the audit writer of one service process."""

    def __init__(self, config: SophiaConfig, *, policy: Policy | None = None, cache: ResultCache | None = None,
                 audit: AuditLog | None = None) -> None:
        from sophia_lib.appdb import open_app_db

        self.config = config
        self.policy = policy or load_policy(config.query.policy)
        self.salt = _mask_salt(config)
        self.cache = cache if cache is not None else open_cache(config)
        self.warehouse = open_warehouse(config)
        self.dialect: TDialect = "postgres" if self.warehouse.name.startswith("postgres") else "duckdb"
        self.readers = ReaderPool(self.warehouse, config.query.snapshot_poll_s)
        self.audit_log = audit or AuditLog(open_app_db(config))
        self.audit = AuditWriter(self.audit_log)
        self._memo: OrderedDict[tuple[str, str, str], GuardedQuery] = OrderedDict()
        self._memo_lock = threading.Lock()

    # -- reads ------------------------------------------------------------------------------------

    def run(self, identity: Identity, request: QueryRequest) -> QueryResult:
        """Run one request for ``identity``; every outcome (served or refused) is audited."""
        started = time.perf_counter()
        scope = self.policy.scope(identity.role, identity.groups)
        try:
            try:
                result, tables = self._run(scope, request, started)
            except SnapshotError as exc:
                raise ServiceUnavailableError(f"no data to serve yet: {exc.message}", fix=exc.fix) from None
        except QueryError as exc:
            self._audit(identity, request, "query.denied", {"reason": exc.reason, "error": exc.message})
            raise
        self._audit(identity, request, f"query.{request.kind}", {
            "tables": tables, "columns": result.columns, "rows": result.rows,
            "snapshot": result.snapshot_id, "duration_ms": round(result.duration_ms, 2), "cached": result.cached})
        return result

    def _run(self, scope: PolicyScope, request: QueryRequest, started: float) -> tuple[QueryResult, list[str]]:
        with self.readers.reader() as (reader, catalog):
            guarded = self._guarded(scope, request, catalog)
            key = cache_key(catalog.snapshot_id, scope.key, guarded.sql, guarded.params)
            body = self.cache.get(key)
            if body is not None:
                return self._result(body, True, started), guarded.tables
            try:
                table = reader.query(guarded.sql, guarded.params)
            except WarehouseError as exc:
                raise BadQueryError(_engine_message(exc.message), fix="correct the query") from None
            if table.num_rows > self.config.query.max_rows:
                raise BadQueryError(f"the result has more than {self.config.query.max_rows:,} rows.",
                                    fix="aggregate, filter or add a LIMIT (query.max_rows sets the cap)")
            body = _ipc(table)
            self.cache.put(key, body)
            return self._result(body, False, started, table), guarded.tables

    def _guarded(self, scope: PolicyScope, request: QueryRequest, catalog: Catalog) -> GuardedQuery:
        memo = (catalog.snapshot_id, scope.key, request.memo_key())
        with self._memo_lock:
            hit = self._memo.get(memo)
        if hit is not None:
            return hit
        sql, params, trusted = self._compile(request)
        guarded = guard(sql, params, scope, catalog, self.dialect, salt=self.salt,
                        max_rows=self.config.query.max_rows, trusted_params=trusted)
        with self._memo_lock:
            self._memo[memo] = guarded
            while len(self._memo) > GUARD_MEMO:
                self._memo.popitem(last=False)
        return guarded

    def _compile(self, request: QueryRequest) -> tuple[str, dict[str, Any], bool]:
        if request.kind == "sql":
            return request.sql or "", dict(request.params), False
        if request.kind == "table":
            schema, table = (request.name or "").lower().split(".")
            columns = ", ".join(quote_ident(c.lower()) for c in request.columns) if request.columns else "*"
            limit = f" LIMIT {int(request.limit)}" if request.limit is not None else ""
            return f"SELECT {columns} FROM {quote_ident(schema)}.{quote_ident(table)}{limit}", {}, False
        return self._compile_metric(request)

    def _compile_metric(self, request: QueryRequest) -> tuple[str, dict[str, Any], bool]:
        try:
            from sophia_lib.metrics import load_catalog
        except ImportError:
            raise ServiceUnavailableError("the metric layer (sophia_lib.metrics) is not installed in the query "
                                          "service.", fix="use sl.table() or sl.sql() meanwhile") from None
        try:
            compiled = load_catalog(self.config).compile(request.name, by=request.by or None, grain=request.grain,
                                                        start=request.start, end=request.end, where=request.where,
                                                        dialect=self.dialect)
        except QueryError:
            raise
        except SophiaError as exc:
            raise BadQueryError(exc.message, fix=exc.fix) from None
        return compiled.sql, dict(compiled.params or {}), True

    def _result(self, body: bytes, cached: bool, started: float, table: pa.Table | None = None) -> QueryResult:
        if table is None:
            with pa.ipc.open_stream(body) as stream:
                schema = stream.schema
            meta, rows = schema.metadata or {}, int((schema.metadata or {}).get(b"sophia.rows", b"0"))
            columns = schema.names
        else:
            meta, rows, columns = table.schema.metadata or {}, table.num_rows, table.schema.names
        return QueryResult(body, meta.get(b"sophia.snapshot_id", b"").decode(), meta.get(b"sophia.as_of", b"").decode(),
                           rows, list(columns), cached, (time.perf_counter() - started) * 1000)

    def tables(self, identity: Identity) -> list[dict[str, Any]]:
        """The tables ``identity`` may read, with columns and which are masked for them."""
        scope = self.policy.scope(identity.role, identity.groups)
        try:
            context = self.readers.reader()
            _, catalog = context.__enter__()
        except SnapshotError as exc:
            raise ServiceUnavailableError(f"no data to serve yet: {exc.message}", fix=exc.fix) from None
        with contextlib.ExitStack() as stack:
            stack.push(context)
            out = []
            for (schema, table), columns in sorted(catalog.tables.items()):
                if not scope.allows(schema, table):
                    continue
                try:
                    rules = scope.table_rules(schema, table, [c.name for c in columns], "x")
                except ForbiddenError:
                    continue
                out.append({"name": f"{schema}.{table}", "columns": [c.name for c in columns],
                            "masked": sorted(rules.masks), "filtered": bool(rules.predicates)})
            return out

    # -- audit ------------------------------------------------------------------------------------

    def _audit(self, identity: Identity, request: QueryRequest, action: str, detail: dict[str, Any]) -> None:
        detail = {"kind": request.kind, **detail}
        if identity.via:
            detail["via"] = identity.via
        if request.kind == "metric":
            detail["metric"] = {"by": request.by, "grain": request.grain, "start": request.start, "end": request.end,
                                "where": request.where}
        future = self.audit.submit(AuditEvent(identity.user, action, identity.role, request.describe()[:512],
                                              detail))
        future.result(timeout=30)  # no answer leaves the service before its read is on record

    def close(self) -> None:
        self.audit.close()
        self.readers.close()
        self.warehouse.close()


def _ipc(table: pa.Table) -> bytes:
    meta = dict(table.schema.metadata or {})
    meta[b"sophia.rows"] = str(table.num_rows).encode()
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _engine_message(message: str) -> str:
    """The engine's error without the rewritten SQL it may quote (which would show the masking)."""
    first = message.splitlines()[0]
    return first.split(" LINE ")[0][:500]


def _mask_salt(config: SophiaConfig) -> str:
    """The salt of hash masking: a secret when configured, else one made at first start (kept 0600)."""
    if config.query.mask_salt is not None:
        from sophia_lib.secrets import resolve

        return resolve(config.query.mask_salt, config)
    path = Path(config.var_dir) / "query" / "mask.salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".mask.salt.{secrets.token_hex(4)}")
        tmp.write_text(secrets.token_hex(32) + "\n")
        tmp.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()
