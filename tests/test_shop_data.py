"""Shop data in SQL: migrations (SQLite and PostgreSQL) and the import command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from dialogue import importer, shop_data
from dialogue.knowledge import entries_from_rows
from shopbot import db, transcripts

from .conftest import ROOT

DEMO = ROOT / "dialogue" / "demo"
SHOP_TABLES = {"orders", "order_items", "tracking_events", "products", "faq"}
ADMIN_TABLES = {"channel_credentials", "api_tokens", "audit_log", "slack_installations"}


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(db._config()).get_current_head()


HEAD = head_revision()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialogue.import", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_migrations_create_the_schema_and_carry_a_database_made_before_them(tmp_path):
    fresh = db.engine_for(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert db.current(fresh) == HEAD
    assert HEAD == "0008"  # transcripts, shop data, admin, FAQ phrasings, shopper, Slack installs, actions,
    # agents' corrections
    assert SHOP_TABLES | ADMIN_TABLES | {"transcript_messages", "corrections"} <= set(inspect(fresh).get_table_names())
    # A database from before migrations: the transcripts table made by create_all, with a row in it.
    legacy_url = f"sqlite:///{tmp_path / 'legacy.db'}"
    legacy = create_engine(legacy_url)
    transcripts.messages.create(legacy)
    with legacy.begin() as conn:
        conn.execute(
            transcripts.messages.insert(),
            {"conversation_id": "web:default:x", "message_id": "1-0", "channel": "web", "sender": "shopper",
             "text": "hi", "ts": 1.0},
        )  # fmt: skip
    upgraded = db.engine_for(legacy_url)
    assert db.current(upgraded) == HEAD and count(upgraded, transcripts.messages) == 1
    assert SHOP_TABLES <= set(inspect(upgraded).get_table_names())
    db.migrate(upgraded)  # a second run changes nothing
    assert db.current(upgraded) == HEAD


def test_processes_starting_together_migrate_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from shopbot import db; db.engine_for({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert db.current(db.engine_for(url, upgrade=False)) == HEAD


def test_migrations_on_postgresql():
    psycopg = pytest.importorskip("psycopg")
    name = f"shopbot_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        engine = db.engine_for(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        assert db.current(engine) == HEAD
        assert ADMIN_TABLES <= set(inspect(engine).get_table_names())
        report = importer.import_file(engine, "orders", DEMO / "orders.json")
        assert report.imported == 8 and count(engine, shop_data.order_items) >= 8
        engine.dispose()
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_demo_data_imports_whole(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    for kind, name, n in (("orders", "orders.json", 8), ("products", "products.csv", 31), ("faq", "faq.csv", 35)):
        report = importer.import_file(engine, kind, DEMO / name)
        assert report.errors == [] and report.imported == n
    with engine.connect() as conn:
        order = conn.execute(select(shop_data.orders).where(shop_data.orders.c.order_number == "10023")).one()
        events = conn.execute(
            select(shop_data.tracking_events).where(shop_data.tracking_events.c.order_number == "10023")
        ).all()
        both = conn.execute(
            text("SELECT count(*) FROM faq WHERE question_zh IS NOT NULL AND question_en IS NOT NULL")
        ).scalar()
    assert order.status == "shipped" and order.carrier == "SF Express" and len(events) == 2
    assert both >= 30


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    bad = tmp_path / "products.csv"
    bad.write_text(
        "sku,name_en,name_zh,category,price,currency,stock\n"
        "A-1,Mug,,home,12.90,USD,10\n"
        "A-2,,,home,5.00,USD,3\n"  # no name in any language
        "A-3,Lamp,,home,-4,USD,1\n"  # negative price
        "A-4,Kite,,toys,9.50,usd,2\n"  # currency not upper-case ISO
        "A-5,Cap,,clothing,16.00,USD,many\n",  # stock not a number
        encoding="utf-8",
    )
    done = cli("products", str(bad), "--database-url", url)
    assert done.returncode == 1
    for line, what in ((3, "name_en or name_zh"), (4, "price"), (5, "currency"), (6, "stock")):
        assert f"line {line}: " in done.stderr and what in done.stderr, (line, done.stderr)
    assert "nothing imported" in done.stderr
    engine = db.engine_for(url)
    assert count(engine, shop_data.products) == 0
    skipped = cli("products", str(bad), "--database-url", url, "--skip-bad")
    assert (
        skipped.returncode == 0 and "imported 1 products" in skipped.stdout and "4 bad rows skipped" in skipped.stdout
    )
    assert count(engine, shop_data.products) == 1


def test_json_errors_name_their_lines_and_duplicate_keys_are_refused(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    orders = tmp_path / "orders.json"
    orders.write_text(
        """[
  {"order_number": "1", "status": "paid", "placed_at": "2026-11-01T10:00:00", "total": "10.00", "currency": "USD"},
  {"order_number": "2", "status": "lost", "placed_at": "2026-11-01T10:00:00", "total": "10.00", "currency": "USD"},
  {"order_number": "1", "status": "paid", "placed_at": "2026-11-02T10:00:00", "total": "12.00", "currency": "USD"},
  {"order_number": "3", "status": "paid", "placed_at": "yesterday", "total": "1.00", "currency": "USD",
   "items": [{"sku": "X", "name": "x", "quantity": 0, "unit_price": "1.00"}]}
]""",
        encoding="utf-8",
    )
    report = importer.import_file(engine, "orders", orders)
    assert report.imported == 0 and count(engine, shop_data.orders) == 0
    joined = "\n".join(report.errors)
    assert "line 3: status: " in joined and "must be one of" in joined
    assert "line 4: order_number '1' is already on line 2" in joined
    assert "line 5: placed_at" in joined and "line 5: items.0.quantity" in joined


def test_importing_again_replaces_rows_by_key(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    first = tmp_path / "faq.csv"
    first.write_text("id,question_en,answer_en\nship,How long?,3-7 days\n", encoding="utf-8")
    importer.import_file(engine, "faq", first)
    first.write_text("id,question_en,answer_en,question_zh,answer_zh\nship,How long?,2-5 days,多久?,2-5 天\n")
    importer.import_file(engine, "faq", first)
    with engine.connect() as conn:
        rows = conn.execute(select(shop_data.faq)).all()
    assert len(rows) == 1 and rows[0].answer_en == "2-5 days" and rows[0].answer_zh == "2-5 天"


def test_other_ways_of_asking_import_from_a_csv_cell_or_a_json_list(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    cells = tmp_path / "faq.csv"
    cells.write_text(
        "id,question_en,answer_en,question_zh,answer_zh,also_asked_en,also_asked_zh\n"
        'ship,How long?,3-7 days,多久?,3-7 天,"when will it arrive |  delivery   time?\nhow many days",'
        "多久到 | 多久到|\n",
        encoding="utf-8",
    )
    assert importer.import_file(engine, "faq", cells).errors == []
    listed = tmp_path / "faq.json"
    too_many = [f"question {i}" for i in range(importer.MAX_PHRASINGS + 1)]
    listed.write_text(
        json.dumps([
            {"id": "pay", "question_en": "Payment?", "answer_en": "Cards.", "also_asked_en": ["visa ok?", "paypal?"]},
            {"id": "many", "question_en": "Q?", "answer_en": "A.", "also_asked_en": too_many},
            {"id": "odd", "question_en": "Q?", "answer_en": "A.", "also_asked_zh": [1, 2]},
        ]),
        encoding="utf-8",
    )  # fmt: skip
    report = importer.import_file(engine, "faq", listed, skip_bad=True)
    joined = "\n".join(report.errors)
    assert (
        report.imported == 1 and f"at most {importer.MAX_PHRASINGS} phrasings" in joined and "also_asked_zh" in joined
    )
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(shop_data.faq))}
    assert rows["ship"].also_asked_en.splitlines() == ["when will it arrive", "delivery time?", "how many days"]
    assert rows["ship"].also_asked_zh == "多久到" and rows["pay"].also_asked_en == "visa ok?\npaypal?"
    entries = {e.id: e for e in entries_from_rows([r._mapping for r in rows.values()])}
    assert entries["ship"].also_asked == {
        "en": ("when will it arrive", "delivery time?", "how many days"),
        "zh": ("多久到",),
    }
    assert entries["pay"].phrasings() == [("en", "Payment?"), ("en", "visa ok?"), ("en", "paypal?")]


def test_unreadable_files_get_a_plain_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    missing = cli("faq", str(tmp_path / "nope.csv"), "--database-url", url)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    odd = tmp_path / "faq.xlsx"
    odd.write_bytes(b"PK\x03\x04")
    wrong = cli("faq", str(odd), "--database-url", url)
    assert wrong.returncode == 2 and ".csv or .json" in wrong.stderr
    not_array = tmp_path / "faq.json"
    not_array.write_text('{"id": "x"}', encoding="utf-8")
    assert "JSON array" in cli("faq", str(not_array), "--database-url", url).stderr


def test_the_demo_page_shows_products_as_the_catalogue_has_them():
    """The demo shop page (gateway/static/shop.html) lists products of the demo catalogue at its prices: a
    shopper who asks the bot about them hears the same names and prices."""
    import csv
    import re

    with (ROOT / "dialogue" / "demo" / "products.csv").open(encoding="utf-8") as fh:
        catalogue = {(r["name_en"], f"{r['price']} {r['currency']}") for r in csv.DictReader(fh)}
    page = (ROOT / "gateway" / "static" / "shop.html").read_text(encoding="utf-8")
    cards = re.findall(r'<div class="card">([^<]+)<br><span class="price">([^<]+)</span>', page)
    assert cards and all(any(text.startswith(n) and price == p for n, p in catalogue) for text, price in cards), cards


def test_the_shops_vectors_are_kept_in_redis_and_a_second_worker_runs_no_encoder(redis_server, tmp_path):
    """What one dialogue worker embedded of the FAQ and catalogue, the next reads back: it loads e5 only for
    a text nobody has embedded yet, and a shopper's text goes to the encoder, never into the cache."""
    import numpy as np
    import redis

    from dialogue.shop import Shop
    from nlu.embed import CachedEmbedder, Embedder
    from shopbot.db import engine_for

    db = redis_server.url.rsplit("/", 1)[0] + "/11"
    r = redis.Redis.from_url(db)
    r.flushdb()
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    for kind, name in (("faq", "faq.csv"), ("products", "products.csv")):  # a few of the demo shop's rows
        with (DEMO / name).open(encoding="utf-8") as fh, (tmp_path / name).open("w", encoding="utf-8") as out:
            rows = list(csv.DictReader(fh))
            w = csv.DictWriter(out, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows[:4])
        importer.import_file(engine_for(url), kind, tmp_path / name)
    loads: list[str] = []
    e5 = Embedder.load()  # each worker would load its own; here they share one and say when they ask for it

    def loader(name):
        def load():
            loads.append(name)
            return e5

        return load

    def shop(name: str) -> Shop:  # with a client that decodes replies, as the workers' store has
        s = Shop(None, engine_for(url), CachedEmbedder(loader(name), redis.Redis.from_url(db, decode_responses=True)))
        s.refresh(force=True)
        return s

    first, second = shop("first"), shop("second")
    assert loads == ["first"]  # the second worker read every vector back
    assert len(first.kb) and np.array_equal(first.kb._q, second.kb._q)
    assert np.array_equal(first.catalog._vecs, second.catalog._vecs)
    fields = r.hlen("sb:vectors:e5-small")
    assert np.allclose(second.vector("where is my parcel"), first.vector("where is my parcel"), atol=1e-5)
    assert loads == ["first", "second"] and r.hlen("sb:vectors:e5-small") == fields  # the shopper's text: not kept
    with engine_for(url).begin() as conn:  # an import changes one answer: only its texts are embedded again
        conn.execute(text("UPDATE faq SET answer_en = answer_en || ' Updated.' WHERE id = (SELECT min(id) FROM faq)"))
    third = shop("third")
    changed = next(e for e in third.kb.entries if e.answer_in("en")[0].endswith(" Updated."))
    new = r.hlen("sb:vectors:e5-small") - fields  # one passage per English phrasing of that entry
    assert loads[-1] == "third" and new == sum(lang == "en" for lang, _ in changed.phrasings()), new
    r.flushdb()
