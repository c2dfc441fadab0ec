"""Agents' corrections as training data.

    python -m nlu.feedback export --database-url URL --task intent --out corrections-intent.csv [--since DATE]

Agents mark shopper messages the bot misread and give the right intent or sentiment (the agents' API and
the Slack desk; the product keeps them in the SQL table ``corrections``). ``export`` writes one task's
corrections as a training CSV (``text,label``, the format ``nlu.train --data`` reads): the rows whose
label for that task is set, oldest first, each text and label once. One task per run: ``--task`` is
required, and each task gets its own file.

nlu imports nothing of the product: the table is read by reflection, with plain SQLAlchemy.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

TASKS = ("intent", "sentiment")


class FeedbackError(RuntimeError):
    """The corrections cannot be read; the message says why."""


def corrections(url: str, task: str, since: date | None = None) -> list[tuple[str, str]]:
    """(text, label) of every correction of ``task`` in the database at ``url``, oldest first, each pair once."""
    from sqlalchemy import MetaData, Table, create_engine, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

    if task not in TASKS:
        raise FeedbackError(f"task must be one of {', '.join(TASKS)}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():  # create_engine would make an empty database there
            raise FeedbackError(f"no database at {parsed.database}")
    engine = create_engine(url)
    try:
        table = Table("corrections", MetaData(), autoload_with=engine)
        q = select(table.c.text, table.c[task]).where(table.c[task].is_not(None))
        if since is not None:
            q = q.where(table.c.created_at >= datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp())
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(table.c.created_at, table.c.id)).all()
    except NoSuchTableError:
        raise FeedbackError("the database has no corrections table (the product makes it: revision 0008)") from None
    except SQLAlchemyError as exc:
        raise FeedbackError(f"could not read the corrections: {type(exc).__name__}: {exc}") from None
    finally:
        engine.dispose()
    pairs = [(" ".join(str(text).split()), str(label)) for text, label in rows]
    return list(dict.fromkeys((t, lab) for t, lab in pairs if t))


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nlu.feedback", description="agents' corrections as training data")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write one task's corrections as a text,label CSV")
    ex.add_argument(
        "--database-url",
        default=os.environ.get("SHOPBOT_DATABASE_URL"),
        help="the product's database (default: SHOPBOT_DATABASE_URL)",
    )
    ex.add_argument("--task", required=True, choices=TASKS, help="which label to export (one file per task)")
    ex.add_argument("--out", required=True, type=Path, help="CSV file to write")
    ex.add_argument("--since", type=date.fromisoformat, help="only corrections made on or after this day (UTC)")
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error("--database-url is required (or set SHOPBOT_DATABASE_URL)")
    try:
        rows = corrections(args.database_url, args.task, args.since)
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        since = f" since {args.since}" if args.since else ""
        print(f"no {args.task} corrections{since}; {args.out} not written", file=sys.stderr)
        return 1
    write_csv(args.out, rows)
    counts = ", ".join(f"{label} {n}" for label, n in Counter(label for _, label in rows).most_common())
    print(f"{args.out}: {len(rows)} rows ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
