"""Tables of the application database: plain SQLAlchemy 2.0 declarative models.

Behaviour lives with the features that use these tables (sync, scheduler, alerts, dashboards,
audit); this module only declares. Every change here needs a migration in ``migrations/versions``;
``tests/test_appdb.py`` fails while models and migrations disagree.

Conventions: integer surrogate keys; times are timezone-aware UTC (:class:`UTCDateTime`, also on
SQLite, which has no time zones); small closed vocabularies are strings guarded by named CHECK
constraints (portable, and new values need only a migration, not an enum type change).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TRunStatus = Literal["queued", "running", "succeeded", "failed"]
TStreamStatus = Literal["queued", "running", "succeeded", "failed", "skipped"]
TJobStatus = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled"]
TJobTrigger = Literal["schedule", "catch_up", "manual"]
TAlertState = Literal["firing", "resolved"]
TDeliveryKind = Literal["alert", "report"]
TDeliveryStatus = Literal["pending", "sent", "failed"]
TSchemaChange = Literal["added", "removed", "retyped"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend.

    Naive datetimes are refused on write: a naive time is ambiguous, and guessing turns into
    off-by-hours bugs in schedules and alert windows.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one, e.g. datetime.now(UTC)")
        value = value.astimezone(UTC)
        # SQLite stores text; drop the offset so values sort and compare as plain strings.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


RUN_STATUSES: tuple[str, ...] = TRunStatus.__args__
STREAM_STATUSES: tuple[str, ...] = TStreamStatus.__args__
JOB_STATUSES: tuple[str, ...] = TJobStatus.__args__
JOB_TRIGGERS: tuple[str, ...] = TJobTrigger.__args__
ALERT_STATES: tuple[str, ...] = TAlertState.__args__
DELIVERY_KINDS: tuple[str, ...] = TDeliveryKind.__args__
DELIVERY_STATUSES: tuple[str, ...] = TDeliveryStatus.__args__
SCHEMA_CHANGES: tuple[str, ...] = TSchemaChange.__args__


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class SyncRun(Base):
    """One sync of one source (all its streams)."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        _one_of("status", RUN_STATUSES, "status"),
        Index(None, "source", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    error_reason: Mapped[str | None] = mapped_column(String(64))


class SyncStreamStat(Base):
    """What one stream of a sync run did."""

    __tablename__ = "sync_stream_stats"
    __table_args__ = (
        _one_of("status", STREAM_STATUSES, "status"),
        UniqueConstraint("run_id", "stream"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows_inserted: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_deleted: Mapped[int] = mapped_column(default=0)
    pages: Mapped[int] = mapped_column(default=0)
    retries: Mapped[int] = mapped_column(default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class JobRun(Base):
    """One attempt of a scheduled job (a papermill notebook run, a refresh, a report).

    ``scheduled_for`` is the schedule slot the attempt belongs to (None for a run by hand); the retries
    of one slot share it. ``output_path`` is the executed notebook (its HTML rendering sits beside it);
    ``failed_cell_index`` counts the cells of the job's notebook as written, from 0."""

    __tablename__ = "job_runs"
    __table_args__ = (
        _one_of("status", JOB_STATUSES, "status"),
        _one_of("trigger", JOB_TRIGGERS, "trigger"),
        Index(None, "job", "scheduled_for"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    scheduled_for: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(default=1)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_path: Mapped[str | None] = mapped_column(Text)
    failed_cell_index: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")


class Alert(Base):
    """One firing episode of an alert rule for one key (e.g. rule 'pipeline_drop', key 'EMEA')."""

    __tablename__ = "alerts"
    __table_args__ = (
        _one_of("state", ALERT_STATES, "state"),
        Index(None, "rule", "key", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(256), default="")
    state: Mapped[str] = mapped_column(String(16), default="firing")
    first_fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    acked_by: Mapped[str | None] = mapped_column(String(128))
    snoozed_until: Mapped[datetime | None]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    kind: Mapped[str] = mapped_column(String(32), default="", server_default="")
    severity: Mapped[str] = mapped_column(String(16), default="warning", server_default="warning")
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    link: Mapped[str | None] = mapped_column(String(512))
    acked_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]


class Delivery(Base):
    """One message sent (or tried) to one recipient on one channel, for an alert or a report run."""

    __tablename__ = "deliveries"
    __table_args__ = (
        _one_of("kind", DELIVERY_KINDS, "kind"),
        _one_of("status", DELIVERY_STATUSES, "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"), index=True)
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    message: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PublishedDashboard(Base):
    """One published version of a notebook as a dashboard; the newest not unpublished one is live."""

    __tablename__ = "published_dashboards"
    __table_args__ = (UniqueConstraint("slug", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(default=1)
    title: Mapped[str] = mapped_column(String(256))
    author: Mapped[str] = mapped_column(String(128))
    audience_groups: Mapped[list[str]] = mapped_column(default=list)
    notebook_path: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    unpublished_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One audit record. Append-only (database triggers refuse UPDATE and DELETE) and hash-chained:
    ``hash`` covers this record and ``prev_hash``, so editing or removing a record is detectable."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(512))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class SchemaEvent(Base):
    """A change in a source stream's columns, seen by a sync."""

    __tablename__ = "schema_events"
    __table_args__ = (
        _one_of("change", SCHEMA_CHANGES, "change"),
        Index(None, "source", "stream"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(128))
    column_name: Mapped[str] = mapped_column(String(256))
    change: Mapped[str] = mapped_column(String(16))
    old_type: Mapped[str | None] = mapped_column(String(64))
    new_type: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantineSummary(Base):
    """How many records of one stream a sync set aside for one reason, and where they sit."""

    __tablename__ = "quarantine_summaries"
    __table_args__ = (Index(None, "source", "stream"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(128))
    records: Mapped[int] = mapped_column(default=0)
    location: Mapped[str | None] = mapped_column(Text)
    sample_keys: Mapped[list[str]] = mapped_column(default=list)
    at: Mapped[datetime] = mapped_column(default=utcnow)
