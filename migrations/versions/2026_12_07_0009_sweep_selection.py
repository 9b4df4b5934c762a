"""sweeps keep what their last report build found of the model confidence set and SPA test

The MCS and SPA come from the runs' stored predictions, which only the report build reads; the
API serves them from `selection_json` (with the revision and rank_by they were computed for),
and keys its cached answers on `selection_at`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("selection_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("selection_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("selection_at")
        batch.drop_column("selection_json")
