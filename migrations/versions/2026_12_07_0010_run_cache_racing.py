"""runs keep their cache key, the run they were recorded from, and why racing skipped them

`cache_key` (indexed) is what a planned run is looked up by in every sweep of the database
(core.run_cache); `cached_from` names the source run (`{sweep id}/{run_key}`) of a run recorded
from the cache; `skip_reason` says why a run is `skipped` (raced out: pairs and p-value).
`sweeps.racing_json` keeps the sweep's racing decisions (a drop is final).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cached_from", sa.String(300), nullable=True))
        batch.add_column(sa.Column("skip_reason", sa.Text(), nullable=True))
        batch.create_index("ix_runs_cache_key", ["cache_key"])
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("racing_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("racing_json")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_cache_key")
        batch.drop_column("skip_reason")
        batch.drop_column("cached_from")
        batch.drop_column("cache_key")
