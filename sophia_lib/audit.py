"""The audit log: append-only and hash-chained, in the app database (``audit_log``).

Every record's ``hash`` is sha256 over its canonical content (seq, time, actor, role, action, target,
detail) and the previous record's hash, so editing, deleting or inserting a record breaks the chain
from that record on; the database refuses UPDATE and DELETE with triggers besides. Someone with
write access to the database who drops the triggers *and* recomputes every later hash is caught by
the head anchor: after each commit the writer records the newest (seq, hash) in
``var_dir/audit.head``, a file outside the database, and ``verify`` checks the chain still reaches it.

One chain for every writer: the next ``seq`` is the primary key, so two processes appending at once
cannot both win; the loser retries on top of the winner. Within a process, :class:`AuditWriter`
batches concurrent appends into one transaction (the query service appends one record per read).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from filelock import FileLock
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from sophia_lib.appdb.engine import AppDb
from sophia_lib.appdb.models import AuditEntry
from sophia_lib.errors import AppDbError

GENESIS = "0" * 64
APPEND_ATTEMPTS = 20
EXPORT_FIELDS = ("seq", "at", "actor", "role", "action", "target", "detail", "prev_hash", "hash")
TExportFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it gets its place in the chain."""

    actor: str
    action: str
    role: str | None = None
    target: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None


def canonical(seq: int, at: datetime, actor: str, role: str | None, action: str, target: str | None,
              detail: Mapping[str, Any]) -> str:
    """The exact text a record's hash covers (stable across SQLite and PostgreSQL round trips)."""
    body = {"seq": seq, "at": at.astimezone(UTC).isoformat(timespec="microseconds"), "actor": actor,
            "role": role, "action": action, "target": target, "detail": detail}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + "\n" + content).encode()).hexdigest()


def _plain(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Detail as it will read back from the JSON column (so the hash computed now matches later)."""
    return json.loads(json.dumps(dict(detail), default=str))


def head_file(app_db: AppDb) -> Path | None:
    """``audit.head`` beside a SQLite app database; None for server databases unless configured."""
    url = app_db.engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).with_name("audit.head")
    return None


class AuditLog:
    """Append to and read the chain in one app database."""

    def __init__(self, app_db: AppDb, head: Path | None | Literal["auto"] = "auto") -> None:
        self.app_db = app_db
        self.head = head_file(app_db) if head == "auto" else head
        self._lock = threading.Lock()
        self._head_lock: FileLock | None = None

    def append(self, event: AuditEvent) -> AuditEntry:
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[AuditEvent], *, advance_head: bool = True) -> list[AuditEntry]:
        """Append events in order, in one transaction; retried when another process appended first.

        ``advance_head=False`` leaves the anchor to the caller (:class:`AuditWriter` moves it after
        answering its waiters, keeping the file write off their path)."""
        events = list(events)
        if not events:
            return []
        with self._lock:
            for attempt in range(APPEND_ATTEMPTS):
                try:
                    entries = self._append_once(events)
                    break
                except (IntegrityError, DBAPIError) as exc:
                    if attempt + 1 == APPEND_ATTEMPTS:
                        raise AppDbError(f"could not append to the audit log after {APPEND_ATTEMPTS} attempts: "
                                         f"{str(exc.orig or exc).strip().splitlines()[0]}",
                                         fix="check that the app database is writable and not locked") from exc
                    time.sleep(0.005 * (attempt + 1))
            if advance_head:
                self.advance_head(entries[-1])
            return entries

    def _append_once(self, events: list[AuditEvent]) -> list[AuditEntry]:
        entries = []
        with self.app_db.session() as s:
            last = s.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            for event in events:
                seq += 1
                at = (event.at or datetime.now(UTC)).astimezone(UTC)
                detail = _plain(event.detail)
                digest = chain_hash(prev, canonical(seq, at, event.actor, event.role, event.action, event.target,
                                                    detail))
                entry = AuditEntry(seq=seq, at=at, actor=event.actor, role=event.role, action=event.action,
                                   target=event.target, detail=detail, prev_hash=prev, hash=digest)
                s.add(entry)
                entries.append(entry)
                prev = digest
        return entries

    def advance_head(self, entry: AuditEntry) -> None:
        """Record ``entry`` as the newest in the anchor file (never moves it backwards)."""
        if self.head is None:
            return
        if self._head_lock is None:
            self._head_lock = FileLock(str(self.head) + ".lock", timeout=10)
        with self._head_lock:
            current = read_head(self.head)
            if current is None or current[0] < entry.seq:
                tmp = self.head.with_suffix(".tmp")
                tmp.write_text(json.dumps({"seq": entry.seq, "hash": entry.hash}) + "\n")
                tmp.replace(self.head)

    def entries(self, since: int = 0, batch: int = 5000) -> Iterator[AuditEntry]:
        """Every record with seq > since, in order (streamed in batches)."""
        last = since
        while True:
            with self.app_db.session() as s:
                rows = list(s.scalars(select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq)
                                      .limit(batch)))
            if not rows:
                return
            yield from rows
            last = rows[-1].seq


def read_head(path: Path) -> tuple[int, str] | None:
    try:
        body = json.loads(path.read_text())
        return int(body["seq"]), str(body["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class VerifyResult:
    """What ``sophia audit verify`` reports. ``bad_seq`` is the first record that does not check out."""

    checked: int
    last_seq: int
    bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(log: AuditLog) -> VerifyResult:
    """Walk the whole chain; stop at the first record that was edited, removed or inserted."""
    prev, expected, checked = GENESIS, 1, 0
    for entry in log.entries():
        if entry.seq != expected:
            what = (f"records {expected}–{entry.seq - 1} are missing (deleted)" if entry.seq > expected
                    else f"record {entry.seq} is out of order")
            return VerifyResult(checked, entry.seq, entry.seq, what)
        if entry.prev_hash != prev:
            return VerifyResult(checked, entry.seq, entry.seq,
                                f"record {entry.seq} does not follow record {entry.seq - 1} (prev_hash differs: "
                                "a record was inserted, removed or rewritten before it)")
        digest = chain_hash(prev, canonical(entry.seq, entry.at, entry.actor, entry.role, entry.action,
                                            entry.target, entry.detail or {}))
        if digest != entry.hash:
            return VerifyResult(checked, entry.seq, entry.seq,
                                f"record {entry.seq} was edited: its content no longer matches its hash")
        prev, expected, checked = entry.hash, expected + 1, checked + 1
    last_seq = expected - 1
    anchor = read_head(log.head) if log.head is not None else None
    if anchor is not None:
        seq, digest = anchor
        if seq > last_seq:
            return VerifyResult(checked, last_seq, last_seq + 1,
                                f"the chain ends at record {last_seq} but record {seq} was written (records after "
                                f"{last_seq} were deleted)")
        with log.app_db.session() as s:
            at_anchor = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))
        if at_anchor != digest:
            return VerifyResult(checked, last_seq, seq,
                                f"record {seq} differs from the one written then (the chain was recomputed)")
    return VerifyResult(checked, last_seq)


def export(log: AuditLog, out: IO[str], fmt: TExportFormat = "jsonl", since: int = 0) -> int:
    """Write every record (seq > since) as CSV or JSON lines; returns how many."""
    n = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    for entry in log.entries(since=since):
        row = {"seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor, "role": entry.role,
               "action": entry.action, "target": entry.target, "detail": entry.detail,
               "prev_hash": entry.prev_hash, "hash": entry.hash}
        if writer is not None:
            writer.writerow([json.dumps(v, sort_keys=True) if k == "detail" else v for k, v in row.items()])
        else:
            out.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        n += 1
    return n


class AuditWriter:
    """A background thread that appends for many concurrent callers, several records per transaction.

    ``submit`` returns a Future that completes once the record is committed, so a caller that must
    not answer before its read is on record (the query service) waits on it.
    """

    def __init__(self, log: AuditLog, max_batch: int = 256) -> None:
        self.log = log
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[AuditEvent, Future[AuditEntry]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sophia-audit-writer", daemon=True)
        self._thread.start()

    def submit(self, event: AuditEvent) -> Future[AuditEntry]:
        future: Future[AuditEntry] = Future()
        self._queue.put((event, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                entries = self.log.append_many([event for event, _ in batch], advance_head=False)
            except BaseException as exc:  # every waiter learns the append failed
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), entry in zip(batch, entries, strict=True):
                future.set_result(entry)
            if self._queue.empty():  # under load the anchor moves once the burst is written
                with contextlib.suppress(OSError, TimeoutError):
                    self.log.advance_head(entries[-1])

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
