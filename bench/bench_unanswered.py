"""How well the unanswered questions are grouped by meaning (dialogue/unanswered.py), on a labelled sample.

    python bench/bench_unanswered.py [--sample bench/data/unanswered-sample.csv] [--distances 0.06,0.08,...]

For each distance threshold: the number of groups (the sample's topics for comparison), purity (the share
of questions in a group whose topic is the group's most common one: 1.0 when no group mixes topics) and
inverse purity (the share of each topic found in its biggest group: 1.0 when no topic is split). The
threshold the product uses is ``dialogue.unanswered.DISTANCE``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def scores(labels: list[int], topics: list[str]) -> tuple[int, float, float]:
    groups: dict[int, list[str]] = {}
    for label, topic in zip(labels, topics, strict=True):
        groups.setdefault(label, []).append(topic)
    purity = sum(Counter(ts).most_common(1)[0][1] for ts in groups.values()) / len(topics)
    by_topic: dict[str, Counter] = {}
    for label, topic in zip(labels, topics, strict=True):
        by_topic.setdefault(topic, Counter())[label] += 1
    inverse = sum(c.most_common(1)[0][1] for c in by_topic.values()) / len(topics)
    return len(groups), purity, inverse


def main(argv: list[str] | None = None) -> int:
    from sklearn.cluster import AgglomerativeClustering

    from dialogue.unanswered import DISTANCE
    from nlu.embed import Embedder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", default=str(ROOT / "bench" / "data" / "unanswered-sample.csv"))
    ap.add_argument("--distances", default="0.06,0.08,0.10,0.12,0.14,0.16,0.18,0.20")
    args = ap.parse_args(argv)
    with open(args.sample, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, topics = [r["text"] for r in rows], [r["topic"] for r in rows]
    vectors = Embedder.load().embed(texts)
    print(f"{len(texts)} questions, {len(set(topics))} topics; the product's threshold: {DISTANCE}")
    print(f"{'distance':>8} {'groups':>6} {'purity':>6} {'inverse':>7}")
    for d in (float(x) for x in args.distances.split(",")):
        model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average", distance_threshold=d)
        labels = model.fit_predict(np.asarray(vectors)).tolist()
        n, purity, inverse = scores(labels, topics)
        mark = "  <- product" if abs(d - DISTANCE) < 1e-9 else ""
        print(f"{d:8.2f} {n:6d} {purity:6.3f} {inverse:7.3f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
