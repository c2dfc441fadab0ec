from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NLU_DATA_DIR", ROOT.parent / "shared" / "data"))


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> args`` from the project root, as a user would."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def sample_csv(src: Path, dest: Path, per_label: int, labels: list[str] | None = None, seed: int = 0) -> Path:
    """A small stratified sample of a real data file."""
    with src.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        if labels is None or r["label"] in labels:
            by_label[r["label"]].append(r)
    rng = random.Random(seed)
    picked = [r for group in by_label.values() for r in rng.sample(group, min(per_label, len(group)))]
    rng.shuffle(picked)
    with dest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(picked)
    return dest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "intents-bitext-en.csv").is_file():
        pytest.fail(f"training data not found in {DATA}; set NLU_DATA_DIR")
    return DATA


INTENTS_SMALL = ["track_order", "cancel_order", "get_refund", "contact_human_agent"]


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, data_dir):
    """An intent and a sentiment model trained for one epoch on small real samples."""
    from nlu.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("models")
    intent_csv = sample_csv(data_dir / "intents-bitext-en.csv", tmp / "intents.csv", 80, INTENTS_SMALL)
    sent_en = sample_csv(data_dir / "sentiment-support-tweets-en.csv", tmp / "tweets.csv", 60)
    sent_zh = sample_csv(data_dir / "sentiment-shopping-reviews-zh.csv", tmp / "reviews.csv", 60)
    common = dict(epochs=1, batch_size=16, freeze_layers=9, progress=False)
    intent = train(TrainConfig(task="intent", data=[str(intent_csv)], out=tmp / "intent", **common))
    sentiment = train(
        TrainConfig(task="sentiment", data=[str(sent_en), str(sent_zh)], out=tmp / "sentiment", max_length=64, **common)
    )
    return {
        "intent_dir": tmp / "intent",
        "sentiment_dir": tmp / "sentiment",
        "intent_csv": intent_csv,
        "sentiment_csvs": [sent_en, sent_zh],
        "intent_metrics": intent,
        "sentiment_metrics": sentiment,
    }
