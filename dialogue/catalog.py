"""The product catalogue: "do you have ..." and "recommend ..." answered by embedding search plus filters.

    q = parse_query("any headphones under 150 dollars?", categories)
    q.max_price == Decimal("150"); q.category is None
    catalog.search(q, vector)  # products that match, best first, in stock first

Prices in a question are in the currency it names (``q.currency``: "CNY" for 元, 块,
¥, 人民币; "USD" for $, dollars, 美元, 刀; None when it names none, read as the shop's).
Categories are found by the names and synonyms the policies file gives for each
(``products.categories``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

import numpy as np

NUM = r"(\d{1,9}(?:[.,]\d{1,2})?)"
CUR = r"(?:\s*(?:usd|dollars?|bucks|eur|euros?|rmb|cny|yuan|元|块钱?|美元|美金|刀|人民币))?"
CUR_NAMED = CUR.removesuffix("?")  # the same, but there must be one
# Only this much of a message is read for prices: a bound on the patterns' work.
MAX_TEXT = 300
_CURRENCIES = [
    ("CNY", re.compile(r"[¥￥]|(?<![美欧])元|块|人民币|\b(rmb|cny|yuan)\b", re.I)),
    ("EUR", re.compile(r"€|\beuros?\b|\beur\b|欧元", re.I)),
    ("USD", re.compile(r"\$|\busd\b|\bdollars?\b|\bbucks\b|美元|美金|刀", re.I)),
]
# (pattern, which bound(s) its numbers set); the first that matches wins, so ranges come first.
_PRICE_PATTERNS = [
    (re.compile(rf"between\s*[\$¥￥]?{NUM}{CUR}\s*(?:and|-|to)\s*[\$¥￥]?{NUM}{CUR}", re.I), "range"),
    (re.compile(rf"[\$¥￥]?{NUM}{CUR}\s*(?:-|~|to|到|至)\s*[\$¥￥]?{NUM}{CUR}(?:\s*之间)?", re.I), "range"),
    (re.compile(rf"(?:under|below|less than|cheaper than|up to|at most|max(?:imum)?|no more than|within)"
                rf"\s*[\$¥￥]?{NUM}{CUR}",
                re.I), "max"),
    (re.compile(rf"(?:不超过|低于|少于|不到|小于|便宜于)\s*[¥￥]?{NUM}{CUR}"), "max"),
    (re.compile(rf"[\$¥￥]?{NUM}{CUR}\s*(?:以下|以内|之内|以下的|内)"), "max"),
    (re.compile(rf"(?:over|above|more than|at least)\s*[\$¥￥]?{NUM}{CUR}", re.I), "min"),
    # "from" bounds a price only with its currency: "the speaker from 10028" names an order.
    (re.compile(rf"\bfrom\s*(?:[\$¥￥]{NUM}{CUR}|{NUM}{CUR_NAMED})", re.I), "min"),
    (re.compile(rf"(?:超过|高于|多于|不低于)\s*[¥￥]?{NUM}{CUR}"), "min"),
    (re.compile(rf"[\$¥￥]?{NUM}{CUR}\s*(?:以上)"), "min"),
]  # fmt: skip


@dataclass(frozen=True)
class Product:
    sku: str
    name: dict[str, str]
    description: dict[str, str]
    category: str
    price: Decimal
    currency: str
    stock: int

    def name_in(self, lang: str) -> str:
        return self.name.get(lang) or next(iter(self.name.values()))


@dataclass(frozen=True)
class ProductQuery:
    text: str
    subject: str  # what is asked for: the text without its price bounds and "do you have"-like words
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    category: str | None = None
    currency: str | None = None  # the currency the prices were asked in, where the message names one

    def admits(self, p: Product) -> bool:
        return (
            (self.min_price is None or p.price >= self.min_price)
            and (self.max_price is None or p.price <= self.max_price)
            and (self.category is None or p.category == self.category)
        )


@dataclass(frozen=True)
class ProductHit:
    product: Product
    score: float


def _dec(s: str) -> Decimal | None:
    try:
        return Decimal(s.replace(",", "."))
    except InvalidOperation:
        return None


def parse_query(
    text: str, categories: dict[str, tuple[str, ...]] | None = None, filler: re.Pattern[str] | None = None
) -> ProductQuery:
    """Price bounds, a category and the subject of a shopper's question, in English or Chinese."""
    lo = hi = None
    text = text[:MAX_TEXT]
    subject = text
    currency = None
    for pattern, kind in _PRICE_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        subject = pattern.sub(" ", text)
        # The currency named at the price, or next to it ("300块以内", "¥100以内", "15到30美元").
        around = text[max(0, m.start() - 1) : m.end() + 4]
        currency = next((code for code, cur in _CURRENCIES if cur.search(around)), None)
        nums = [_dec(g) for g in m.groups() if g]
        if kind == "range" and len(nums) == 2:
            lo, hi = min(nums), max(nums)  # type: ignore[type-var]
        elif kind == "max":
            hi = nums[0]
        elif kind == "min":
            lo = nums[0]
        break
    category = None
    low = text.lower()
    for name, words in (categories or {}).items():
        if any(w.lower() in low for w in words):
            category = name
            break
    if filler is not None:
        subject = filler.sub(" ", subject)
    subject = re.sub(r"[\s?？!！,，.。、]+", " ", subject).strip()
    return ProductQuery(text, subject, lo, hi, category, currency)


class Catalog:
    """Products, each indexed by its name and description in every language the shop wrote."""

    def __init__(self, products: list[Product], embedder):
        self.products = list(products)
        self.embedder = embedder
        owners, texts = [], []
        for i, p in enumerate(self.products):
            for lang, name in p.name.items():
                owners.append(i)
                texts.append(f"{name}. {p.description.get(lang, '')}".strip())
        self._owner = np.array(owners, dtype=np.int64)
        self._terms = frozenset().union(*map(terms, texts)) if texts else frozenset()
        if texts:
            from nlu.embed import PASSAGE

            self._vecs = embedder.embed(texts, PASSAGE)
        else:
            self._vecs = np.zeros((0, 1), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.products)

    def mentions(self, text: str) -> bool:
        """Whether ``text`` has a word the catalogue's names and descriptions use ("earbuds", "手表"), not
        only chat ("pls", "got", "for my nephew", "有"): a subject that names nothing the shop describes
        narrows no search."""
        return not terms(text).isdisjoint(self._terms)

    def scores(self, vec: np.ndarray) -> np.ndarray:
        best = np.full(len(self.products), -1.0, dtype=np.float32)
        if self.products:
            np.maximum.at(best, self._owner, self._vecs @ vec)
        return best

    def search(
        self,
        query: ProductQuery,
        vec: np.ndarray | None,
        min_lead: float,
        spread: float,
        k: int = 3,
        by_category: bool = True,
    ) -> list[ProductHit]:
        """Products the filters admit that stand out for the subject, in stock first, then best first.

        A product's relevance is its similarity less the catalogue's median
        similarity: e5's raw scores sit in a narrow band that shifts with the
        query's language and length, its lead over the crowd does not. Products
        need ``min_lead`` and to be within ``spread`` of the best. With no
        subject (only a category or a price) every admitted product qualifies.
        A category named in the question is a filter of its own: with
        ``by_category`` (the question names nothing more specific) the products of
        that category and price are ranked by the subject, not held to the lead
        ("sports stuff under 30" lists the sports products under 30).
        """
        rel = self._relevance(vec)
        loose = vec is None or (query.category is not None and by_category)
        admitted = [i for i, p in enumerate(self.products) if query.admits(p) and (loose or rel[i] >= min_lead)]
        if query.category is not None and by_category and admitted:
            admitted.sort(key=lambda i: (self.products[i].stock <= 0, -rel[i], self.products[i].price))
            return [ProductHit(self.products[i], float(rel[i])) for i in admitted[:k]]
        if not admitted:
            return []
        top = max(rel[i] for i in admitted)
        close = [i for i in admitted if rel[i] >= top - spread]
        close.sort(key=lambda i: (self.products[i].stock <= 0, -rel[i], self.products[i].price))
        return [ProductHit(self.products[i], float(rel[i])) for i in close[:k]]

    def _relevance(self, vec: np.ndarray | None) -> np.ndarray:
        if vec is None:
            return np.zeros(len(self.products), dtype=np.float32)
        scores = self.scores(vec)
        return scores - float(np.median(scores)) if len(scores) else scores

    def nearest(self, query: ProductQuery, vec: np.ndarray | None, min_lead: float, k: int = 2) -> list[Product]:
        """For "not found": the products that match the subject but not the price asked, closest first."""
        if vec is None or (query.min_price is None and query.max_price is None):
            return []
        rel = self._relevance(vec)
        anyprice = replace(query, min_price=None, max_price=None)
        close = [i for i, p in enumerate(self.products) if anyprice.admits(p) and rel[i] >= min_lead]
        close.sort(key=lambda i: -rel[i])
        return [self.products[i] for i in close[:k]]

    @property
    def currency(self) -> str | None:
        """The catalogue's currency (the commonest among its products)."""
        found = [p.currency for p in self.products]
        return max(set(found), key=found.count) if found else None

    def similar_to(self, skus: list[str], exclude: set[str], k: int = 2) -> list[Product]:
        """In-stock products like the ones bought (same category, closest by embedding), not already bought."""
        bought = [i for i, p in enumerate(self.products) if p.sku in skus]
        if not bought:
            return []
        cats = {self.products[i].category for i in bought}
        centre = np.mean([self._vecs[self._owner == i].mean(0) for i in bought], axis=0)
        scores = self.scores(centre / (np.linalg.norm(centre) or 1.0))
        pool = [i for i, p in enumerate(self.products) if p.category in cats and p.stock > 0 and p.sku not in exclude]
        pool.sort(key=lambda i: -scores[i])
        return [self.products[i] for i in pool[:k]]


_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_COMMON = frozenset("and with for the one two all you your are has have from not per set pack".split())


def terms(text: str) -> set[str]:
    """A text's words for telling whether it names something: English words of three letters or more
    (without a plural s), and every two Chinese characters side by side."""
    low = text.lower()
    words = {
        w.removesuffix("es") if w.endswith(("ches", "shes", "xes")) else w.removesuffix("s") for w in _WORD.findall(low)
    }
    words = {w for w in words if len(w) > 2}
    han = {run[i : i + 2] for run in _HAN.findall(text) for i in range(len(run) - 1)}
    return (words - _COMMON) | han


def products_from_rows(rows) -> list[Product]:
    out = []
    for r in rows:
        name = {lang: r[f"name_{lang}"].strip() for lang in ("en", "zh") if (r[f"name_{lang}"] or "").strip()}
        if not name:
            continue
        desc = {
            lang: r[f"description_{lang}"].strip() for lang in ("en", "zh") if (r[f"description_{lang}"] or "").strip()
        }
        out.append(Product(r["sku"], name, desc, r["category"], Decimal(r["price"]), r["currency"], int(r["stock"])))
    return out
