"""The questions the bot could not answer, grouped by meaning, for the shop to add FAQ entries from.

The NLU worker runs :func:`compute` (task ``workers.tasks.group_unanswered``): it reads the shoppers'
unanswered messages from the transcripts in SQL (what the bot did not understand, offered "did you mean"
for, called out of scope, or handed off for not understanding), embeds them with the retrieval encoder,
and groups them by cosine distance (average linkage: a group's members are on average this close to each
other). The result, biggest group first with three examples each (those nearest the group's centre), is
kept in Redis for the admin page (``GET /admin/api/analytics/unanswered``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from shopbot.transcripts import messages

UNANSWERED_ACTIONS = ("not_understood", "did_you_mean", "out_of_scope", "handoff:not_understood")
RESULT_KEY = "sb:analytics:unanswered"
# Set while a computation is queued or running, so that the admin page's polling queues one at a time.
RUNNING_KEY = "sb:analytics:unanswered:running"
# Average-linkage cosine distance under which questions share a group. Chosen on a labelled sample of
# unanswered-style questions (bench/data/unanswered-sample.csv, bench/bench_unanswered.py).
DISTANCE = 0.12
MAX_TEXTS = 2000
MAX_GROUPS = 50


@dataclass(frozen=True)
class Group:
    count: int
    language: str
    examples: list[str]


def unanswered_texts(engine: Engine, since: float, limit: int = MAX_TEXTS) -> list[tuple[str, str]]:
    """The newest unanswered shopper messages since ``since`` (epoch s), as (text, language)."""
    m = messages.c
    q = (
        select(m.text, m.language)
        .where(m.sender == "shopper", m.action.in_(UNANSWERED_ACTIONS), m.ts >= since)
        .order_by(m.ts.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(t, lang or "en") for t, lang in conn.execute(q).all() if t and t.strip()]


def group(texts: list[str], vectors: np.ndarray, languages: list[str], distance: float = DISTANCE) -> list[Group]:
    """Groups of texts by meaning, biggest first; the same text twice counts twice, but is shown once."""
    if not texts:
        return []
    if len(texts) == 1:
        return [Group(1, languages[0], [texts[0]])]
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance
    ).fit_predict(vectors)
    out = []
    for label in set(labels.tolist()):
        idx = np.flatnonzero(labels == label)
        centre = vectors[idx].mean(axis=0)
        nearest = idx[np.argsort(-(vectors[idx] @ centre))]
        examples = list(dict.fromkeys(texts[i] for i in nearest))[:3]
        language = Counter(languages[i] for i in idx).most_common(1)[0][0]
        out.append(Group(len(idx), language, examples))
    out.sort(key=lambda g: (-g.count, g.examples[0]))
    return out


def compute(engine: Engine, embedder, days: float = 30.0, now: float | None = None) -> dict:
    """The groups of the last ``days`` days' unanswered questions, as the admin API returns them."""
    now = time.time() if now is None else now
    rows = unanswered_texts(engine, now - days * 86400)
    texts = [t for t, _ in rows]
    vectors = embedder.embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    groups = group(texts, vectors, [lang for _, lang in rows])[:MAX_GROUPS]
    return {"status": "ready", "computed_at": now, "days": days, "questions": len(texts),
            "groups": [asdict(g) for g in groups]}  # fmt: skip


def store_result(r, result: dict) -> None:
    with r.pipeline() as p:
        p.set(RESULT_KEY, json.dumps(result, ensure_ascii=False))
        p.delete(RUNNING_KEY)
        p.execute()
