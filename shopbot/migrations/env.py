"""Alembic environment: always run with a connection handed over by shopbot.db."""

from alembic import context

from dialogue import shop_data  # noqa: F401 - registers its tables
from shopbot import (  # noqa: F401
    access,
    corrections,
    credentials,
    slack_installs,
    transcripts,  # noqa: F401
)
from shopbot.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shopbot.db (python -m shopbot.db upgrade)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
