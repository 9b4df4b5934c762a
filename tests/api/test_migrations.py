"""Alembic migrations: they build what the models describe, and upgrade a database that has data."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.db.migrate import alembic_config, upgrade_database
from app.db.models import Base


def test_an_existing_database_gains_revisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sweeps (asset, output_subdir, config_json, status, continue_on_error, created_at,"
                " updated_at) VALUES ('SYN', 'old', '{}', 'succeeded', 0, '2026-01-01', '2026-01-01')"
            )
        )
    upgrade_database(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT output_subdir, revision FROM sweeps")).all() == [("old", 0)]
    engine.dispose()


def test_migrations_build_the_schema_the_models_describe(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_database(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
