"""Alembic environment: runs on the connection handed over by `Database.migrate()`."""

from __future__ import annotations

from alembic import context

from afterbeep.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through afterbeep (afterbeep migrate), not the alembic CLI")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
