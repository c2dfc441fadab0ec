"""Knowledge-base retrieval: top-1 accuracy on paraphrased questions, what the bot would do, and latency.

    .venv/bin/python bench/bench_kb.py [--faq dialogue/demo/faq.csv] [--questions bench/data/faq-paraphrases.csv]
                             [--policies FILE] [--sweep]

The questions file has, per FAQ entry, paraphrases in English and Chinese
written for this benchmark (never used to tune the index itself), plus
questions the FAQ does not answer (``faq_id`` = ``none``). Reported:

- top-1 accuracy per language (is the best entry the right one);
- with the policy's thresholds: answered right, answered wrong, "did you mean"
  offering the right entry, nothing; and for the unanswerable questions how
  many got an answer (must be none) or a suggestion;
- latency of one query (embedding + search), p50 and p99, on this machine;
- ``--sweep``: the same decision figures over a grid of thresholds;
- ``--models DIR``: the product's own decision as well: each question through the
  dialogue engine (NLU models from DIR, the demo shop), where a confident intent
  mapped to an FAQ entry also answers. An answer is an FAQ answer (``faq:ENTRY``);
  precision counts the unanswerable questions' answers as wrong.

Tune thresholds on ``bench/data/faq-paraphrases.csv`` (the development set);
report them on ``bench/data/faq-paraphrases-check.csv`` (written apart, never tuned on).

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _decisions(
    results, answer_score: float, suggest_score: float, min_lead: float, clear_lead: float | None = None
) -> dict[str, float]:
    from dialogue.knowledge import decide

    counts = {k: 0 for k in ("right", "wrong", "suggested", "nothing", "oos_answered", "oos_suggested", "oos_nothing")}
    n_in = sum(1 for gold, _ in results if gold != "none")
    n_out = len(results) - n_in
    for gold, hits in results:
        d = decide(hits, answer_score, suggest_score, min_lead, clear_lead)
        ids = [h.entry.id for h in d.hits]
        if gold == "none":
            counts[{"answer": "oos_answered", "clarify": "oos_suggested", "none": "oos_nothing"}[d.action]] += 1
        elif d.action == "answer":
            counts["right" if ids[0] == gold else "wrong"] += 1
        elif d.action == "clarify" and gold in ids:
            counts["suggested"] += 1
        else:
            counts["nothing"] += 1
    out = {k: round(v / (n_out if k.startswith("oos") else n_in), 3) for k, v in counts.items()}
    # Of all "answer" decisions (unanswerable questions included), how many gave the right entry.
    answers = counts["right"] + counts["wrong"] + counts["oos_answered"]
    out["precision"] = round(counts["right"] / answers, 3) if answers else 1.0
    out["answered"] = round((counts["right"] + counts["wrong"]) / n_in, 3) if n_in else 0.0
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faq", type=Path, default=ROOT / "dialogue" / "demo" / "faq.csv")
    ap.add_argument("--questions", type=Path, default=ROOT / "bench" / "data" / "faq-paraphrases.csv")
    ap.add_argument("--policies", type=Path, default=None)
    ap.add_argument("--sweep", action="store_true", help="decision figures over a grid of thresholds")
    ap.add_argument("--models", type=Path, help="also the dialogue engine's decisions, with these NLU models")
    args = ap.parse_args(argv)

    from dialogue.knowledge import KnowledgeBase, entries_from_rows
    from dialogue.policy import load_policy
    from nlu.embed import Embedder

    policy = load_policy(args.policies)
    t0 = time.perf_counter()
    embedder = Embedder.load()
    kb = KnowledgeBase(entries_from_rows(_rows(args.faq)), embedder)
    print(f"index: {len(kb)} FAQ entries, built in {time.perf_counter() - t0:.1f} s (with loading the encoder)")

    questions = _rows(args.questions)
    for q in questions[:5]:  # warm-up
        kb.search(q["question"])
    results, latencies = [], []
    for q in questions:
        t = time.perf_counter()
        hits = kb.search(q["question"], k=3)
        latencies.append((time.perf_counter() - t) * 1000)
        results.append((q["faq_id"], hits))

    out: dict[str, object] = {"faq_entries": len(kb), "questions": len(questions)}
    for lang in ("en", "zh", "all"):
        sel = [
            (g, h) for (g, h), q in zip(results, questions, strict=True)
            if g != "none" and (lang == "all" or q["language"] == lang)
        ]  # fmt: skip
        acc = sum(h[0].entry.id == g for g, h in sel) / len(sel) if sel else 0.0
        out[f"top1_{lang}"] = round(acc, 3)
        print(f"top-1 accuracy {lang:>3}: {acc:.3f} ({len(sel)} questions)")
    fp = policy.faq
    dec = _decisions(results, fp.answer_score, fp.suggest_score, fp.min_lead, fp.clear_lead)
    out["decisions"] = dec
    print(
        f"with answer_score {fp.answer_score}, suggest_score {fp.suggest_score}, min_lead {fp.min_lead},"
        f" clear_lead {fp.clear_lead}:"
    )
    print(
        f"  answerable: right {dec['right']:.1%}, wrong {dec['wrong']:.1%}, right one suggested {dec['suggested']:.1%},"
        f" nothing {dec['nothing']:.1%}; precision of answers {dec['precision']:.3f}, answered {dec['answered']:.1%}"
    )
    print(
        f"  unanswerable: answered {dec['oos_answered']:.1%}, suggested {dec['oos_suggested']:.1%},"
        f" nothing {dec['oos_nothing']:.1%}"
    )
    lat = sorted(latencies)
    out["latency_ms_p50"] = round(statistics.median(lat), 1)
    out["latency_ms_p99"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1)
    print(f"latency per query: p50 {out['latency_ms_p50']} ms, p99 {out['latency_ms_p99']} ms")
    if args.sweep:
        print("answer  lead   suggest | right  wrong  sugg.  oos_ans oos_sugg precision")
        for a in (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1):
            for lead in (0.0, 0.01, 0.02, 0.03):
                for s in (0.02, 0.03, 0.04, 0.05, 0.06):
                    d = _decisions(results, a, min(s, a), lead)
                    print(
                        f"{a:.3f}  {lead:.3f}  {s:.3f}   | {d['right']:.3f}  {d['wrong']:.3f}  {d['suggested']:.3f}"
                        f"  {d['oos_answered']:.3f}   {d['oos_suggested']:.3f}    {d['precision']:.3f}"
                    )
    if args.models:
        out["engine"] = _engine(args.models, questions, policy)
    print(json.dumps(out))
    return out


def _engine(models: Path, questions: list[dict[str, str]], policy) -> dict[str, float]:
    """What the product does with each question (a new conversation each): FAQ answers right, wrong, none."""
    from dialogue.check import demo_shop, nlu_annotator
    from dialogue.engine import step
    from dialogue.state import ConversationState

    annotate, shop = nlu_annotator(models), demo_shop(None)
    anns = annotate([q["question"] for q in questions])
    right = wrong = oos_answered = n_in = 0
    actions: dict[str, int] = {}
    for q, ann in zip(questions, anns, strict=True):
        r = step(ConversationState(locale=q["language"]), q["question"], ann, policy, 1000.0, shop)
        kind = r.action.split(":")[0]
        actions[kind] = actions.get(kind, 0) + 1
        gold = q["faq_id"]
        n_in += gold != "none"
        if kind == "faq":
            if gold == "none":
                oos_answered += 1
                said = f"{r.action} [{ann.intent} {ann.intent_confidence:.2f}]"
                print(f"  unanswerable answered: {q['question']!r} -> {said}")
            elif r.action == f"faq:{gold}":
                right += 1
            else:
                wrong += 1
                print(f"  wrong: {q['question']!r} ({gold}) -> {r.action} [{ann.intent} {ann.intent_confidence:.2f}]")
    answers = right + wrong + oos_answered
    res = {
        "precision": round(right / answers, 3) if answers else 1.0,
        "answered": round((right + wrong) / n_in, 3),
        "right": right,
        "wrong": wrong,
        "unanswerable_answered": oos_answered,
        "actions": actions,
    }
    print(f"engine: precision of FAQ answers {res['precision']:.3f}, answered {res['answered']:.1%}; actions {actions}")
    return res


if __name__ == "__main__":
    main()
