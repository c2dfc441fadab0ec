"""The shop's knowledge base: FAQ entries found by embedding retrieval, in Chinese and English.

Each entry is indexed by every question it has (en, zh) and by the other ways
shoppers ask it that the shop wrote down (``also_asked_en`` / ``also_asked_zh``),
each twice: the phrasing alone and the phrasing with the answer. A phrasing's
similarity to the shopper's message is the mean of both, less the median
similarity of all the phrasings in the same language: e5 rates any two texts of
one language closer than a text and its translation, so raw scores would bury
an entry the shop only wrote in English under loosely related Chinese ones. An
entry's score is the mean of its two best phrasings in one language (its best
alone where a language has one), so that a single phrasing sharing some words
with the message does not carry the entry. Measured on the development
questions (``bench/data/faq-paraphrases.csv``, 2026-12-05): top-1 0.949 for the
best phrasing alone, 0.982 for the two best; with the questions only, before
the demo FAQ had other phrasings, top-1 was 0.875 on its first 152 rows.

The score decides what the bot does (thresholds in the policies file):
``answer`` at or above ``faq.answer_score`` with a clear lead over the runner-up,
``clarify`` ("did you mean ...?") down to ``faq.suggest_score``, below that
nothing: the bot asks to rephrase or offers an agent, never a confident guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

LANGS = ("en", "zh")
# Below this many questions in a language their median says little; this typical e5 median is used instead.
MIN_GROUP = 8
TYPICAL_MEDIAN = 0.84


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: dict[str, str]  # language -> text, only the languages the shop wrote
    answer: dict[str, str]
    tags: tuple[str, ...] = ()
    also_asked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # language -> other phrasings

    def phrasings(self) -> list[tuple[str, str]]:
        """(language, text) of the question and every other way of asking it."""
        out = list(self.question.items())
        for lang, texts in self.also_asked.items():
            out.extend((lang, t) for t in texts)
        return out

    def answer_in(self, lang: str) -> tuple[str, str]:
        """The answer in ``lang`` if the shop wrote one, else in the other language; with the language used."""
        if lang in self.answer:
            return self.answer[lang], lang
        other = next(iter(self.answer))
        return self.answer[other], other

    def question_in(self, lang: str) -> str:
        return self.question.get(lang) or next(iter(self.question.values()))


@dataclass(frozen=True)
class FaqHit:
    entry: FaqEntry
    score: float


@dataclass(frozen=True)
class FaqDecision:
    action: Literal["answer", "clarify", "none"]
    hits: tuple[FaqHit, ...] = ()


def decide(
    hits: list[FaqHit], answer_score: float, suggest_score: float, min_lead: float, clear_lead: float | None = None
) -> FaqDecision:
    """Answer when the best entry is sure and clearly ahead (or plausible and ``clear_lead`` ahead of every
    other), suggest when it is plausible, else nothing."""
    if not hits or hits[0].score < suggest_score:
        return FaqDecision("none")
    lead = hits[0].score - hits[1].score if len(hits) > 1 else 1.0
    if (hits[0].score >= answer_score and lead >= min_lead) or (clear_lead is not None and lead >= clear_lead):
        return FaqDecision("answer", (hits[0],))
    return FaqDecision("clarify", tuple(h for h in hits[:2] if h.score >= suggest_score))


class KnowledgeBase:
    def __init__(self, entries: list[FaqEntry], embedder):
        self.entries = list(entries)
        self.embedder = embedder
        owners, langs, questions, with_answers = [], [], [], []
        for i, e in enumerate(self.entries):
            for lang, q in e.phrasings():
                owners.append(i)
                langs.append(lang)
                questions.append(q)
                with_answers.append(f"{q} {e.answer_in(lang)[0]}")
        self._groups = [np.array([g == lang for g in langs]) for lang in LANGS if lang in langs]
        # Phrasings by (entry, language), padded with -1 to at least two: an entry's score is the mean of one
        # row's best two (its best alone where the second is padding).
        rows: dict[tuple[int, str], list[int]] = {}
        for j, key in enumerate(zip(owners, langs, strict=True)):
            rows.setdefault(key, []).append(j)
        width = max([2, *(len(v) for v in rows.values())])
        self._rows = np.array([v + [-1] * (width - len(v)) for v in rows.values()], dtype=np.int64).reshape(-1, width)
        self._row_owner = np.array([owner for owner, _ in rows], dtype=np.int64)
        if questions:
            from nlu.embed import PASSAGE, QUERY

            self._q = embedder.embed(questions, QUERY)
            self._qa = embedder.embed(with_answers, PASSAGE)
        else:
            self._q = self._qa = np.zeros((0, 1), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, text: str, k: int = 3) -> list[FaqHit]:
        if not self.entries or not text.strip():
            return []
        return self.search_vector(self.embedder.embed([text])[0], k)

    def search_vector(self, vec: np.ndarray, k: int = 3) -> list[FaqHit]:
        if not self.entries:
            return []
        per_question = (self._q @ vec + self._qa @ vec) / 2
        for group in self._groups:
            sims = per_question[group]
            per_question[group] = sims - (np.median(sims) if len(sims) >= MIN_GROUP else TYPICAL_MEDIAN)
        padded = np.where(self._rows >= 0, per_question[self._rows], -np.inf)
        top = -np.sort(-padded, axis=1)[:, :2]
        per_row = np.where(np.isfinite(top[:, 1]), top.mean(axis=1), top[:, 0])
        best = np.full(len(self.entries), -np.inf, dtype=np.float32)
        np.maximum.at(best, self._row_owner, per_row)
        order = np.argsort(-best)[:k]
        return [FaqHit(self.entries[i], float(best[i])) for i in order]


def entries_from_rows(rows) -> list[FaqEntry]:
    """FAQ rows (the ``faq`` table's mappings) as entries; rows without any question or answer are left out."""
    out = []
    for r in rows:
        q = {lang: r[f"question_{lang}"].strip() for lang in LANGS if (r[f"question_{lang}"] or "").strip()}
        a = {lang: r[f"answer_{lang}"].strip() for lang in LANGS if (r[f"answer_{lang}"] or "").strip()}
        if q and a:
            tags = tuple(t.strip() for t in (r["tags"] or "").split(",") if t.strip())
            also = {lang: tuple(split_phrasings(r.get(f"also_asked_{lang}") or "")) for lang in LANGS}
            out.append(FaqEntry(r["id"], q, a, tags, {lang: ps for lang, ps in also.items() if ps}))
    return out


def split_phrasings(text: str) -> list[str]:
    """The phrasings in an ``also_asked`` cell: separated by ``|`` or line breaks, blanks and repeats dropped."""
    return list(dict.fromkeys(" ".join(p.split()) for p in re.split(r"[|\n]", text) if p.strip()))
