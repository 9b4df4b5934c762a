"""runs record their skill against the naive forecast and its Diebold-Mariano test

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("test_skill", sa.Float(), nullable=True))
        batch.add_column(sa.Column("test_dm_stat", sa.Float(), nullable=True))
        batch.add_column(sa.Column("test_dm_pvalue", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("test_dm_pvalue")
        batch.drop_column("test_dm_stat")
        batch.drop_column("test_skill")
