"""The SQL database: one schema (transcripts, shop data), kept up to date by Alembic migrations.

    python -m shopbot.db upgrade     # bring SHOPBOT_DATABASE_URL to the latest schema
    python -m shopbot.db current     # which revision it is at

SQLite by default, PostgreSQL by URL. ``engine_for`` migrates on first use, so
workers and commands never meet an old schema; a database made before
migrations existed (transcripts only) is recognised and carried forward.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Engine

metadata = MetaData()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # transcripts, as create_all made them before migrations


def _config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision``; safe when several processes start at once (one migrates, the others wait)."""
    from alembic import command

    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7242001)"))  # held until this transaction ends
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "transcript_messages" in tables:
            command.stamp(_config(conn), BASELINE)  # made by create_all before migrations
        command.upgrade(_config(conn), revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite has no advisory locks: a lock file beside the database serializes the processes."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def engine_for(url: str, upgrade: bool = True) -> Engine:
    """An engine for ``url``, its schema migrated to the latest revision."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if upgrade:
        migrate(engine)
    return engine


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .settings import get_settings

    ap = argparse.ArgumentParser(prog="python -m shopbot.db", description="database schema migrations")
    ap.add_argument("command", choices=["upgrade", "current"])
    ap.add_argument("--url", help="database URL (default: SHOPBOT_DATABASE_URL)")
    args = ap.parse_args(argv)
    engine = engine_for(args.url or get_settings().database_url, upgrade=False)
    if args.command == "upgrade":
        migrate(engine)
    print(f"{engine.url.render_as_string(hide_password=True)}: revision {current(engine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
