"""The default-model command: skips what exists, never leaves half a model, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nlu.build_default import CALM_REQUESTS, DEFAULTS, build, calm_requests, is_complete
from nlu.inference import NLU
from nlu.train import SHARED_SETTINGS

from .conftest import INTENTS_SMALL, run_cli, sample_csv

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_cover_both_tasks_and_the_chinese_seed_set():
    assert set(DEFAULTS) == {"intent", "sentiment"}
    intent_files = [str(f) for f in DEFAULTS["intent"]["files"]]
    assert "intents-bitext-en.csv" in intent_files
    assert any(f.endswith("intents-zh-seed.csv") and Path(f).is_file() for f in intent_files)
    sentiment_files = [Path(f).name for f in DEFAULTS["sentiment"]["files"]]
    assert sentiment_files[:2] == ["sentiment-support-tweets-en.csv", "sentiment-shopping-reviews-zh.csv"]
    # Chat messages in both languages, calm requests as neutral; the reviews have no neutral.
    assert {"sentiment-chat-en.csv", "sentiment-chat-zh.csv", CALM_REQUESTS} <= set(sentiment_files)
    assert DEFAULTS["sentiment"]["partial_labels"] == ["sentiment-shopping-reviews-zh.csv"]
    for f in DEFAULTS["sentiment"]["files"] + DEFAULTS["intent"]["files"]:
        assert not isinstance(f, Path) or f.is_file(), f
    # Trained jointly, they must agree on what shapes the one encoder they share.
    for key in SHARED_SETTINGS:
        assert DEFAULTS["intent"].get(key) == DEFAULTS["sentiment"].get(key), key
    assert "base_model" not in DEFAULTS["intent"] and "base_model" not in DEFAULTS["sentiment"]


@pytest.mark.slow
def test_build_trains_missing_models_and_keeps_existing_ones(tmp_path, data_dir, monkeypatch):
    small = tmp_path / "data"
    small.mkdir()
    sample_csv(data_dir / "intents-bitext-en.csv", small / "i.csv", 30, INTENTS_SMALL)
    sample_csv(data_dir / "sentiment-support-tweets-en.csv", small / "s.csv", 30)
    specs = {
        "intent": {"files": ["i.csv"], "epochs": 1, "freeze_layers": 11, "max_length": 32},
        "sentiment": {"files": ["s.csv"], "epochs": 1, "freeze_layers": 11, "max_length": 32},
    }
    out = tmp_path / "models"
    built = build(small, out, specs=specs, progress=False)
    assert built == [out / "intent", out / "sentiment"]
    assert all(is_complete(p) for p in built)
    assert not list(out.glob(".*partial"))
    stamp = (out / "intent" / "head.safetensors").stat().st_mtime_ns
    assert build(small, out, specs=specs, progress=False) == []  # present: kept
    assert (out / "intent" / "head.safetensors").stat().st_mtime_ns == stamp
    # Trained jointly (the default): one encoder, which the runtime runs once for both.
    monkeypatch.setenv("NLU_MODELS_DIR", str(out))
    nlu = NLU.load(device="cpu")
    assert nlu.shared_depth == 12
    assert nlu.annotate(["where is my order"])[0].language == "en"
    # One of them missing: both are trained again, or they would no longer share the encoder.
    shutil.rmtree(out / "sentiment")
    assert build(small, out, specs=specs, progress=False) == [out / "intent", out / "sentiment"]
    assert (out / "intent" / "head.safetensors").stat().st_mtime_ns != stamp
    assert NLU.load(device="cpu").shared_depth == 12
    # Alone (or with joint=False) a model is fine-tuned apart: the two share the frozen trunk only.
    assert build(small, out, specs=specs, tasks=("intent",), force=True, progress=False) == [out / "intent"]
    assert NLU.load(device="cpu").shared_depth == 11


def test_missing_training_data_is_a_clear_error(tmp_path):
    r = run_cli("nlu.build_default", "--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m"), timeout=120)
    assert r.returncode == 2
    assert "training data not found" in r.stderr and "intents-bitext-en.csv" in r.stderr
    assert "Traceback" not in r.stderr


def test_calm_requests_are_intent_rows_without_complaints_or_offensive_language(tmp_path, data_dir):
    spec = DEFAULTS["sentiment"]["calm_requests"]
    path = calm_requests(data_dir, tmp_path, spec)
    assert path == tmp_path / CALM_REQUESTS
    import csv

    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with (data_dir / "intents-bitext-en.csv").open(encoding="utf-8") as fh:
        bitext = {r["text"].strip(): r for r in csv.DictReader(fh)}
    assert {r["label"] for r in rows} == {"neutral"}
    intents = {r["intent"] for r in rows}
    assert "complaint" not in intents and len(intents) == 26
    english = [r for r in rows if r["text"] in bitext]
    assert spec["per_file"] * 0.9 <= len(english) <= spec["per_file"]
    assert not any("W" in bitext[r["text"]]["flags"] for r in english)
    assert any("\u4e00" <= c <= "\u9fff" for r in rows for c in r["text"])  # the Chinese seed rows too
    assert calm_requests(data_dir, tmp_path / "again", spec).read_bytes() == path.read_bytes()  # reproducible
