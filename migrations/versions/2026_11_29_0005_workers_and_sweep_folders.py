"""worker heartbeats; a sweep's dataset fingerprint and its report publisher (one build at a time)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("dataset_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("publisher", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("publisher_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), primary_key=True),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queues", sa.String(length=200), nullable=False),
        sa.Column("gpu", sa.String(length=64), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("runs_in_hand", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_workers_last_seen", table_name="workers")
    op.drop_table("workers")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("publisher_until")
        batch.drop_column("publisher")
        batch.drop_column("dataset_json")
