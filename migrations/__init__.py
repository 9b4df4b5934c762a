"""Alembic migrations of the app's database, shipped as package data: `app.db.migrate` finds
this folder with importlib.resources, so a normal (non-editable) install can migrate."""
