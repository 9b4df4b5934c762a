"""The database layer: SQLAlchemy models, engine/session set-up, migrations, sweep services.

Workers and the CLI may import this package (never `app.api`).
"""
