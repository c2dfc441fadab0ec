"""Alembic environment: always run with a connection handed over by shopbot.db."""

from alembic import context

from admin import access, credentials, slack_installs  # noqa: F401 - register their tables
from dialogue import shop_data  # noqa: F401 - registers its tables
from shopbot import corrections, transcripts  # noqa: F401 - register their tables
from shopbot.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shopbot.db (python -m shopbot.db upgrade)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
