"""Retrieval vectors worked out ahead, in the NLU worker's batch, so that the dialogue step runs no model.

The NLU pass embeds every text a dialogue step may search the shop's data with (the message itself for the
FAQ; for a product question, its subject for the catalogue) and stores the vectors with the annotation,
keyed by a hash of the text. The step looks a vector up by its text and embeds only what is not there (an
annotation written before this existed, or a subject worked out in the other language), so a miss costs
time, never a different answer.

    texts = retrieval_texts(policy, "do you have headphones under 150?", "en", "product_info")
    stored = encode(dict(zip(map(key, texts), embedder.embed(texts))))   # JSON-safe, with the annotation
    decode(stored)[key("do you have headphones under 150?")]              # the message's vector
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

import numpy as np

from .catalog import parse_query
from .policy import Policy

LANGUAGES = ("en", "zh")


def key(text: str) -> str:
    """The key of a text's vector: the embedder strips the text, so the key does too."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def encode(vectors: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Vectors as base64 of little-endian float32 (exact, about 2 KB for e5-small's 384 dimensions)."""
    return {k: base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii") for k, v in vectors.items()}


def decode(stored: object) -> dict[str, np.ndarray]:
    """What :func:`encode` wrote; a malformed entry is left out (the step embeds that text itself)."""
    out: dict[str, np.ndarray] = {}
    if not isinstance(stored, Mapping):
        return out
    for k, b64 in stored.items():
        try:
            raw = base64.b64decode(str(b64), validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw and len(raw) % 4 == 0:
            out[str(k)] = np.frombuffer(raw, dtype="<f4")
    return out


def product_signal(policy: Policy, text: str) -> str | None:
    """ "strong" for a product question ("do you have", a price bound), "weak" for a looser sign, else None."""
    pp = policy.products
    if pp is None:
        return None
    text = text[:300]
    if any(p.search(text) for p in pp.trigger.values()) or price_bound(policy, text):
        return "strong"
    if any(p.search(text) for p in pp.weak_trigger.values()):
        return "weak"
    return None


def price_bound(policy: Policy, text: str) -> bool:
    """The message bounds a price ("under 30", "60块以下", "between 15 and 25")."""
    pp = policy.products
    q = parse_query(text[:300], pp.categories) if pp is not None else None
    return q is not None and (q.min_price is not None or q.max_price is not None)


def subject(policy: Policy, text: str, lang: str) -> str:
    """What a product search embeds: the message without its price bounds, category and filler words."""
    pp = policy.products
    if pp is None:
        return ""
    return parse_query(text, pp.categories, pp.filler[lang]).subject


# Where a message's questions part: sentence ends, commas, "and also", 还有 / 另外 / 顺便问下.
_CLAUSE_BREAK = re.compile(
    r"[?？!！;；。\n]+|\.(?:\s+|$)|[,，、]\s*(?:and\s+|also\s+|plus\s+)?|\s+(?:and also|also|plus)\s+"
    r"|还有|另外|以及|顺便问一?下|然后|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])"  # 中文 typed with spaces
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
# A part that asks something: a question word or mark (statements, greetings and thanks are not searched).
_ASKS = re.compile(
    r"[?？]|\b(how|what|when|where|which|who|why|do|does|did|can|could|is|are|will|would|should|any)\b"
    r"|吗|呢|多少|几[天个号块]|怎么|什么|啥|哪|是否|能不能|可不可以|有没有|多久|咋|么$",
    re.IGNORECASE,
)
MAX_CLAUSES = 6


def clauses(text: str) -> list[str]:
    """The parts of a message of several parts that ask something, each of which may be a question of its own
    ("how much is shipping to the UK, do you take PayPal, and how long does it take?", a long letter with its
    question in the middle): up to three, of three words (four Chinese characters) or more, or none."""
    parts = [p.strip(" ,.-~") for p in _CLAUSE_BREAK.split(text[:400])]
    parts = [p for p in parts if len(_CJK.findall(p)) >= 4 or len(p.split()) >= 3]
    if len(parts) < 2:
        return []
    return [p for p in parts[:MAX_CLAUSES] if _ASKS.search(p)][:3]


def retrieval_texts(policy: Policy, text: str, language: str, intent: str = "") -> list[str]:
    """The texts a dialogue step may embed for this message, the message first, each once.

    The subject is added for messages the step may search the catalogue with (a product signal, or the
    place-order intent), in the message's language (both, when the language is neither of the two); the
    message's clauses (:func:`clauses`) for a message of several parts, which the step may search the FAQ
    with one by one."""
    texts = [text]
    if text.strip() and policy.products is not None and (product_signal(policy, text) or intent == "place_order"):
        for lang in (language,) if language in LANGUAGES else LANGUAGES:
            texts.append(subject(policy, text, lang))
    texts += clauses(text)
    seen: set[str] = set()
    return [t for t in texts if t.strip() and not (key(t) in seen or seen.add(key(t)))]
