"""Alembic environment: runs migrations against the URL configured by app.db.migrate or alembic.ini."""

from __future__ import annotations

import os

from alembic import context

from app.db.models import Base
from app.db.session import make_engine

config = context.config
url = os.environ.get("DATABASE_URL") if config.config_file_name else None
url = url or config.get_main_option("sqlalchemy.url")
assert url, "no database URL"

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
