"""sweep revision (bumped with every change to a sweep's runs: the API's cache key); runs by plan order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_runs_sweep_ordinal", "runs", ["sweep_id", "ordinal"])


def downgrade() -> None:
    op.drop_index("ix_runs_sweep_ordinal", table_name="runs")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("revision")
