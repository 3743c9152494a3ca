"""initial schema: sync runs, job runs, alerts, deliveries, dashboards, audit log, schema events, quarantine

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

# The audit log is append-only in the database itself, not only by convention. (A later SQLite
# "batch" migration that rebuilds audit_log must create these triggers again.)
PG_APPEND_ONLY = [
    """CREATE FUNCTION sophia_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION sophia_audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION sophia_audit_log_append_only()""",
]
SQLITE_APPEND_ONLY = [
    f"""CREATE TRIGGER audit_log_no_{op_.lower()} BEFORE {op_} ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {op_} refused'); END"""
    for op_ in ("UPDATE", "DELETE")
]


def _status(column: str, values: tuple[str, ...], table: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_reason", sa.String(length=64), nullable=True),
        _status("status", ("queued", "running", "succeeded", "failed"), "sync_runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index(op.f("ix_sync_runs_source_created_at"), "sync_runs", ["source", "created_at"])

    op.create_table(
        "sync_stream_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_inserted", sa.Integer(), nullable=False),
        sa.Column("rows_updated", sa.Integer(), nullable=False),
        sa.Column("rows_deleted", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _status("status", ("queued", "running", "succeeded", "failed", "skipped"), "sync_stream_stats"),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.id"], name=op.f("fk_sync_stream_stats_run_id_sync_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_stream_stats")),
        sa.UniqueConstraint("run_id", "stream", name=op.f("uq_sync_stream_stats_run_id_stream")),
    )

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", TZ, nullable=True),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.Column("failed_cell_index", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _status("status", ("queued", "running", "succeeded", "failed", "cancelled"), "job_runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index(op.f("ix_job_runs_job_scheduled_for"), "job_runs", ["job", "scheduled_for"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_fired_at", TZ, nullable=False),
        sa.Column("last_fired_at", TZ, nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("acked_by", sa.String(length=128), nullable=True),
        sa.Column("snoozed_until", TZ, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _status("state", ("firing", "resolved"), "alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_rule_key_state"), "alerts", ["rule", "key", "state"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("job_run_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _status("kind", ("alert", "report"), "deliveries"),
        _status("status", ("pending", "sent", "failed"), "deliveries"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_deliveries_alert_id_alerts"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_run_id"], ["job_runs.id"], name=op.f("fk_deliveries_job_run_id_job_runs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_alert_id"), "deliveries", ["alert_id"])
    op.create_index(op.f("ix_deliveries_job_run_id"), "deliveries", ["job_run_id"])

    op.create_table(
        "published_dashboards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("audience_groups", sa.JSON(), nullable=False),
        sa.Column("notebook_path", sa.Text(), nullable=False),
        sa.Column("published_at", TZ, nullable=False),
        sa.Column("unpublished_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_dashboards")),
        sa.UniqueConstraint("slug", "version", name=op.f("uq_published_dashboards_slug_version")),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    for statement in PG_APPEND_ONLY if op.get_bind().dialect.name == "postgresql" else SQLITE_APPEND_ONLY:
        op.execute(statement)

    op.create_table(
        "schema_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("column_name", sa.String(length=256), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("old_type", sa.String(length=64), nullable=True),
        sa.Column("new_type", sa.String(length=64), nullable=True),
        sa.Column("at", TZ, nullable=False),
        _status("change", ("added", "removed", "retyped"), "schema_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_events")),
    )
    op.create_index(op.f("ix_schema_events_source_stream"), "schema_events", ["source", "stream"])

    op.create_table(
        "quarantine_summaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("sample_keys", sa.JSON(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.id"], name=op.f("fk_quarantine_summaries_run_id_sync_runs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_summaries")),
    )
    op.create_index(op.f("ix_quarantine_summaries_run_id"), "quarantine_summaries", ["run_id"])
    op.create_index(op.f("ix_quarantine_summaries_source_stream"), "quarantine_summaries", ["source", "stream"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION sophia_audit_log_append_only()")
    else:
        op.drop_table("audit_log")
    for table in ("quarantine_summaries", "schema_events", "published_dashboards", "deliveries", "alerts",
                  "job_runs", "sync_stream_stats", "sync_runs"):
        op.drop_table(table)
