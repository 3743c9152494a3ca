"""job runs: timed_out status, duration and trigger (schedule, catch_up, manual)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
NEW_STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "cancelled")
TRIGGERS = ("schedule", "catch_up", "manual")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _table(statuses: tuple[str, ...]) -> sa.Table:
    """job_runs as 0001 created it, for SQLite's batch rebuild (it cannot alter a CHECK constraint in place)."""
    tz = sa.DateTime(timezone=True)
    return sa.Table(
        "job_runs", sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", tz, nullable=True),
        sa.Column("started_at", tz, nullable=True),
        sa.Column("finished_at", tz, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.Column("failed_cell_index", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("status", statuses), name="ck_job_runs_status"),
        sa.Index("ix_job_runs_job_scheduled_for", "job", "scheduled_for"),
    )


def _keeping_delivery_links(rebuild: Callable[[], None]) -> None:
    """On SQLite the batch rebuild drops job_runs, and with foreign keys on that deletes its rows first, which
    sets deliveries.job_run_id to NULL (ON DELETE SET NULL). Remember the links and put them back."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMP TABLE _job_run_links AS SELECT id, job_run_id FROM deliveries "
                   "WHERE job_run_id IS NOT NULL")
    rebuild()
    if sqlite:
        op.execute("UPDATE deliveries SET job_run_id = (SELECT job_run_id FROM _job_run_links l "
                   "WHERE l.id = deliveries.id) WHERE id IN (SELECT id FROM _job_run_links)")
        op.execute("DROP TABLE _job_run_links")


def upgrade() -> None:
    _keeping_delivery_links(_upgrade)


def downgrade() -> None:
    op.execute("UPDATE job_runs SET status = 'failed' WHERE status = 'timed_out'")
    _keeping_delivery_links(_downgrade)


def _upgrade() -> None:
    with op.batch_alter_table("job_runs", copy_from=_table(OLD_STATUSES)) as batch:
        batch.drop_constraint(op.f("ck_job_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_job_runs_status"), _in("status", NEW_STATUSES))
        batch.add_column(sa.Column("duration_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("trigger", sa.String(length=16), nullable=False, server_default="manual"))
        batch.create_check_constraint(op.f("ck_job_runs_trigger"), _in("trigger", TRIGGERS))


def _downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_constraint(op.f("ck_job_runs_trigger"), type_="check")
        batch.drop_column("trigger")
        batch.drop_column("duration_s")
        batch.drop_constraint(op.f("ck_job_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_job_runs_status"), _in("status", OLD_STATUSES))
