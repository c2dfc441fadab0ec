"""Import the shop's orders, products and FAQ from CSV or JSON into SQL.

    python -m dialogue.import orders|products|faq FILE [--skip-bad] [--database-url URL]

Every row is validated; bad rows are reported with their line numbers and, by
default, nothing is imported from a file that has any (``--skip-bad`` imports
the good rows). A key twice in one file is an error; a key already in the
database is replaced (importing the catalogue again updates it). One
transaction per file.

Orders: ``order_number, status, placed_at, total, currency`` and optionally
``customer_ref, email, carrier, tracking_number, expected_delivery,
shipping_address, items, tracking``. ``items`` is a list of ``{sku, name,
quantity, unit_price}`` and ``tracking`` of ``{at, location, description}``
(in CSV, a JSON array in the cell). Products: ``sku, category, price,
currency, stock`` and ``name_en`` and/or ``name_zh`` (+ descriptions). FAQ:
``id`` and a question and an answer in at least one language
(``question_en, answer_en, question_zh, answer_zh``), ``tags``, and optionally
``also_asked_en`` / ``also_asked_zh``: other ways shoppers ask the question, which
the bot recognises as well (in CSV one cell, phrasings separated by ``|`` or line
breaks; in JSON a list of strings; at most 50 per language, 300 characters each).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from . import shop_data as t
from .knowledge import split_phrasings


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class Item(_Row):
    sku: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1)
    unit_price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)


class TrackingEvent(_Row):
    at: datetime
    location: str | None = Field(None, max_length=200)
    description: str = Field(min_length=1)


class OrderRow(_Row):
    order_number: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    customer_ref: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    status: str
    carrier: str | None = Field(None, max_length=60)
    tracking_number: str | None = Field(None, max_length=80)
    placed_at: datetime
    expected_delivery: date | None = None
    shipping_address: str | None = None
    total: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    items: list[Item] = []
    tracking: list[TrackingEvent] = []

    @field_validator("status")
    @classmethod
    def _status(cls, v: str) -> str:
        if v.lower() not in t.ORDER_STATUSES:
            raise ValueError(f"must be one of {', '.join(t.ORDER_STATUSES)}")
        return v.lower()

    @field_validator("items", "tracking", mode="before")
    @classmethod
    def _json_cell(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON array: {exc.msg}") from None
        return v


class ProductRow(_Row):
    sku: str = Field(min_length=1, max_length=40)
    name_en: str | None = Field(None, max_length=200)
    name_zh: str | None = Field(None, max_length=200)
    description_en: str | None = None
    description_zh: str | None = None
    category: str = Field(min_length=1, max_length=60)
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    stock: int = Field(ge=0)

    @model_validator(mode="after")
    def _named(self) -> ProductRow:
        if not (self.name_en or self.name_zh):
            raise ValueError("a product needs name_en or name_zh")
        return self


MAX_PHRASINGS = 50
MAX_PHRASING_CHARS = 300


class FaqRow(_Row):
    id: str = Field(min_length=1, max_length=40)
    question_en: str | None = None
    question_zh: str | None = None
    answer_en: str | None = None
    answer_zh: str | None = None
    tags: str | None = Field(None, max_length=200)
    also_asked_en: str | None = None
    also_asked_zh: str | None = None

    @field_validator("also_asked_en", "also_asked_zh", mode="before")
    @classmethod
    def _phrasings(cls, v: Any) -> str | None:
        """One phrasing per line: a list (JSON) or one cell with ``|`` or line breaks between phrasings."""
        if v is None:
            return None
        if isinstance(v, list) and all(isinstance(p, str) for p in v):
            v = "\n".join(v)
        if not isinstance(v, str):
            raise ValueError("expected phrasings as text separated by | or a list of strings")
        out = split_phrasings(v)
        if len(out) > MAX_PHRASINGS:
            raise ValueError(f"at most {MAX_PHRASINGS} phrasings per language, got {len(out)}")
        if too_long := next((p for p in out if len(p) > MAX_PHRASING_CHARS), None):
            raise ValueError(f"a phrasing longer than {MAX_PHRASING_CHARS} characters: {too_long[:40]}...")
        return "\n".join(out) or None

    @model_validator(mode="after")
    def _one_language(self) -> FaqRow:
        if not ((self.question_en and self.answer_en) or (self.question_zh and self.answer_zh)):
            raise ValueError("an entry needs a question and its answer in English or Chinese (or both)")
        return self


KINDS: dict[str, tuple[type[_Row], str]] = {
    "orders": (OrderRow, "order_number"),
    "products": (ProductRow, "sku"),
    "faq": (FaqRow, "id"),
}


class ImportError_(ValueError):
    """The file cannot be read at all (missing, not CSV/JSON, wrong shape)."""


@dataclass
class ImportReport:
    kind: str
    path: str
    imported: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: field: problem"
    skipped: int = 0


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs from a CSV (header on line 1) or a JSON array of objects."""
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        return _json_rows(path, text)
    if path.suffix.lower() != ".csv":
        raise ImportError_(f"{path}: expected a .csv or .json file")
    reader = csv.DictReader(text.splitlines(keepends=True))
    if not reader.fieldnames:
        raise ImportError_(f"{path}: empty file (a header line is needed)")
    rows = []
    for row in reader:
        extra = row.pop(None, None)  # type: ignore[call-overload]
        if extra:
            row["__extra__"] = extra
        rows.append((reader.line_num, row))
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """A JSON array, each element with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise ImportError_(f"{path}: expected a JSON array of objects")
    pos = _skip_ws(text, pos + 1)
    rows: list[tuple[int, dict[str, Any]]] = []
    while pos < len(text) and text[pos] != "]":
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportError_(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None
        rows.append((line, value if isinstance(value, dict) else {"__not_an_object__": value}))
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return rows


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def validate(kind: str, rows: list[tuple[int, dict[str, Any]]]) -> tuple[list[_Row], list[str]]:
    model, key = KINDS[kind]
    good: list[_Row] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        if "__not_an_object__" in raw:
            errors.append(f"line {line}: expected an object, got {type(raw['__not_an_object__']).__name__}")
            continue
        if "__extra__" in raw:
            errors.append(f"line {line}: more cells than the header has columns")
            continue
        try:
            row = model.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"]) or "row"
                errors.append(f"line {line}: {where}: {e['msg']}")
            continue
        k = getattr(row, key)
        if k in seen:
            errors.append(f"line {line}: {key} {k!r} is already on line {seen[k]}")
            continue
        seen[k] = line
        good.append(row)
    return good, errors


def import_file(engine: Engine, kind: str, path: str | Path, skip_bad: bool = False) -> ImportReport:
    if kind not in KINDS:
        raise ImportError_(f"unknown kind {kind!r}: orders, products or faq")
    p = Path(path)
    report = ImportReport(kind, str(p))
    good, report.errors = validate(kind, read_rows(p))
    if report.errors and not skip_bad:
        return report
    report.skipped = len(report.errors)
    with engine.begin() as conn:
        if kind == "orders":
            keys = [r.order_number for r in good]  # type: ignore[attr-defined]
            for chunk in _chunks(keys):
                conn.execute(delete(t.orders).where(t.orders.c.order_number.in_(chunk)))
                conn.execute(delete(t.order_items).where(t.order_items.c.order_number.in_(chunk)))
                conn.execute(delete(t.tracking_events).where(t.tracking_events.c.order_number.in_(chunk)))
            _insert(conn, t.orders, [r.model_dump(exclude={"items", "tracking"}) for r in good])
            _insert(
                conn, t.order_items, [{"order_number": r.order_number, **i.model_dump()} for r in good for i in r.items]
            )  # type: ignore[attr-defined]
            _insert(
                conn,
                t.tracking_events,
                [{"order_number": r.order_number, **e.model_dump()} for r in good for e in r.tracking],
            )  # type: ignore[attr-defined]
        else:
            table, key = (t.products, "sku") if kind == "products" else (t.faq, "id")
            for chunk in _chunks([getattr(r, key) for r in good]):
                conn.execute(delete(table).where(table.c[key].in_(chunk)))
            _insert(conn, table, [r.model_dump() for r in good])
    report.imported = len(good)
    return report


def _insert(conn, table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(table), rows)


def _chunks(keys: list[str], n: int = 500):
    for i in range(0, len(keys), n):
        yield keys[i : i + n]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from shopbot.db import engine_for
    from shopbot.settings import get_settings

    ap = argparse.ArgumentParser(prog="python -m dialogue.import", description="import shop data from CSV or JSON")
    ap.add_argument("kind", choices=sorted(KINDS))
    ap.add_argument("file")
    ap.add_argument("--skip-bad", action="store_true", help="import the good rows of a file that has bad ones")
    ap.add_argument("--database-url", help="default: SHOPBOT_DATABASE_URL")
    args = ap.parse_args(argv)
    try:
        engine = engine_for(args.database_url or get_settings().database_url)
        report = import_file(engine, args.kind, args.file, args.skip_bad)
    except ImportError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e in report.errors[:200]:
        print(f"{report.path} {e}", file=sys.stderr)
    if len(report.errors) > 200:
        print(f"... and {len(report.errors) - 200} more", file=sys.stderr)
    if report.errors and not args.skip_bad:
        print(f"{len(report.errors)} bad rows: nothing imported (fix them, or --skip-bad)", file=sys.stderr)
        return 1
    skipped = f" ({report.skipped} bad rows skipped)" if report.skipped else ""
    print(f"imported {report.imported} {args.kind} from {report.path}{skipped}")
    return 0
