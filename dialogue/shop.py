"""What the bot knows about the shop: its orders, its FAQ and its catalogue, behind one object.

    shop = Shop.from_settings(settings)   # SQL tables (or the shop's order API) + the e5 embedder
    shop.order("10023")                   # an Order or None; OrderSourceError when the source is down
    shop.faq(shop.vector("运费多少"))      # FAQ hits, best first

The dialogue engine asks it questions; it does the I/O. FAQ and products are
read from the database once and re-read when they change (checked at most every
``refresh_s`` seconds), so an import reaches running workers without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from . import shop_data as t
from .catalog import Catalog, Product, ProductHit, ProductQuery, products_from_rows
from .knowledge import FaqHit, KnowledgeBase, entries_from_rows
from .orders import Order, OrderSource, SqlOrders

log = logging.getLogger(__name__)


class Shop:
    def __init__(self, orders: OrderSource, engine: Engine | None, embedder, refresh_s: float = 30.0):
        self.orders = orders
        self.engine = engine
        self.embedder = embedder
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self._fingerprint = ""
        self.kb = KnowledgeBase([], embedder)
        self.catalog = Catalog([], embedder)

    @classmethod
    def from_settings(cls, settings, embedder=None) -> Shop:
        from nlu.embed import Embedder
        from shopbot.db import engine_for

        from .orders import order_source

        engine = engine_for(settings.database_url)
        return cls(order_source(settings, engine), engine, embedder or Embedder.load())

    # -- FAQ and catalogue, kept in step with the database ---------------------------------

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.engine is None or (not force and now - self._checked < self.refresh_s):
            return
        with self._lock:
            if not force and now - self._checked < self.refresh_s:
                return
            self._checked = now
            with self.engine.connect() as conn:
                faq_rows = [r._mapping for r in conn.execute(select(t.faq).order_by(t.faq.c.id))]
                product_rows = [r._mapping for r in conn.execute(select(t.products).order_by(t.products.c.sku))]
            digest = hashlib.sha256(repr((faq_rows, product_rows)).encode()).hexdigest()
            if digest == self._fingerprint:
                return
            t0 = time.perf_counter()
            self.kb = KnowledgeBase(entries_from_rows(faq_rows), self.embedder)
            self.catalog = Catalog(products_from_rows(product_rows), self.embedder)
            self._fingerprint = digest
            log.info(
                "shop data indexed",
                extra={
                    "faq": len(self.kb),
                    "products": len(self.catalog),
                    "seconds": round(time.perf_counter() - t0, 2),
                },
            )

    def vector(self, text: str) -> np.ndarray:
        """Embed one text here. The workers' dialogue step has the NLU pass's vectors and gets here only
        for a text they lack (dialogue.retrieval), which the log says."""
        log.info("retrieval vector computed in the dialogue step", extra={"chars": len(text)})
        # A shopper's text is embedded, never kept: past a vector cache (nlu.embed.CachedEmbedder) to its encoder.
        return getattr(self.embedder, "embedder", self.embedder).embed([text])[0]

    def faq(self, vec: np.ndarray, k: int = 3) -> list[FaqHit]:
        self.refresh()
        return self.kb.search_vector(vec, k)

    def products(
        self, query: ProductQuery, vec: np.ndarray | None, min_lead: float, spread: float, k: int, by_category=True
    ):
        self.refresh()
        return self.catalog.search(query, vec, min_lead, spread, k, by_category)

    # -- orders ------------------------------------------------------------------------------

    def order(self, number: str) -> Order | None:
        return self.orders.get(number)

    def recent_orders(self, who: str, limit: int = 5) -> list[Order]:
        """The customer's latest orders (SQL source only; a shop's order API is asked for single orders)."""
        if not isinstance(self.orders, SqlOrders):
            return []
        with self.engine.connect() as conn:  # type: ignore[union-attr]
            numbers = conn.execute(
                select(t.orders.c.order_number)
                .where(or_(t.orders.c.customer_ref == who, t.orders.c.email == who))
                .order_by(t.orders.c.placed_at.desc())
                .limit(limit)
            ).scalars()
            numbers = list(numbers)
        return [o for n in numbers if (o := self.orders.get(n)) is not None]

    def suggestions(self, who: str, k: int = 2) -> list[Product]:
        """Products like the ones in the customer's recent orders, not bought before."""
        self.refresh()
        bought = [i.sku for o in self.recent_orders(who) for i in o.items]
        return self.catalog.similar_to(bought, set(bought), k) if bought else []


__all__ = ["FaqHit", "ProductHit", "Shop"]
