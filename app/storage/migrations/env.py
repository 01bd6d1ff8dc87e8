"""Alembic environment: run programmatically by app.storage.store.migrate (connection passed in)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from app.storage.models import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` command line with -x url=... (developers only)
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
