"""alerts: kind, severity, summary, dashboard link, ack time, last notification; deliveries: the message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("alerts", sa.Column("kind", sa.String(length=32), nullable=False, server_default=""))
    op.add_column("alerts", sa.Column("severity", sa.String(length=16), nullable=False, server_default="warning"))
    op.add_column("alerts", sa.Column("summary", sa.Text(), nullable=False, server_default=""))
    op.add_column("alerts", sa.Column("link", sa.String(length=512), nullable=True))
    op.add_column("alerts", sa.Column("acked_at", TZ, nullable=True))
    op.add_column("alerts", sa.Column("notified_at", TZ, nullable=True))
    op.add_column("deliveries", sa.Column("subject", sa.Text(), nullable=True))
    op.add_column("deliveries", sa.Column("message", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("message")
        batch.drop_column("subject")
    with op.batch_alter_table("alerts") as batch:
        for column in ("notified_at", "acked_at", "link", "summary", "severity", "kind"):
            batch.drop_column(column)
