"""What the models need for chat: partly labelled sources, calibrated confidence,
out of scope, and check sets that are never trained on."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from dialogue import Annotation, ConversationState, load_policy, step
from nlu.calibration import expected_calibration_error, fit_label_offsets, fit_temperature, masked_cross_entropy

from .conftest import run_main

ROOT = Path(__file__).resolve().parent.parent
NLU_DATA = ROOT / "nlu" / "data"
CHECK_DIR = NLU_DATA / "check"


def test_masked_loss_is_plain_cross_entropy_when_every_label_is_allowed():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    allowed = torch.ones(8, 3, dtype=torch.bool)
    for eps in (0.0, 0.1):
        expected = torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, targets)
        assert torch.allclose(masked_cross_entropy(logits, targets, allowed, eps), expected, atol=1e-6)


def test_a_row_from_a_partly_labelled_source_never_pushes_down_a_label_it_lacks():
    """Labels negative, neutral, positive; a review knows only negative and positive."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 3)
    features = torch.randn(4, 16)
    targets = torch.tensor([0, 2, 0, 2])
    review = torch.tensor([[True, False, True]] * 4)
    loss = masked_cross_entropy(head(features), targets, review, label_smoothing=0.1)
    loss.backward()
    # The neutral row of the head gets no gradient at all from review rows ...
    assert torch.count_nonzero(head.weight.grad[1]) == 0 and head.bias.grad[1] == 0
    assert torch.count_nonzero(head.weight.grad[0]) > 0
    # ... whereas an unmasked loss would push neutral down for every one of them.
    head.zero_grad()
    torch.nn.CrossEntropyLoss(label_smoothing=0.1)(head(features), targets).backward()
    assert head.bias.grad[1] > 0
    # One step of gradient descent on review rows leaves the neutral logit where it was.
    head.zero_grad()
    before = head(features)[:, 1].detach().clone()
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    masked_cross_entropy(head(features), targets, review, 0.1).backward()
    opt.step()
    assert torch.allclose(head(features)[:, 1], before)


def test_temperature_scaling_recovers_a_known_temperature_and_lowers_the_calibration_error():
    gen = torch.Generator().manual_seed(1)
    true_logits = torch.randn(4000, 5, generator=gen) * 2
    targets = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1)
    overconfident = true_logits * 3  # a model three times too sure of itself
    t = fit_temperature(overconfident, targets)
    assert 2.6 < t < 3.4, t
    before = expected_calibration_error(torch.softmax(overconfident, -1), targets)
    after = expected_calibration_error(torch.softmax(overconfident / t, -1), targets)
    assert after < before / 3, (before, after)
    assert fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0


def test_label_offsets_recover_a_suppressed_prior_and_leave_the_other_labels_alone():
    """A model that learned "neutral is rare" where it is common: the fitted offset puts
    neutral back, and negative against positive stays exactly as the model had it."""
    gen = torch.Generator().manual_seed(2)
    true_logits = torch.randn(3000, 3, generator=gen) * 2
    targets = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1)
    skewed = true_logits.clone()
    skewed[:, 1] -= 1.5  # neutral pushed down by a source that never had it
    free = torch.tensor([False, True, False])
    offsets = fit_label_offsets(torch.log_softmax(skewed, -1), targets, free)
    assert offsets[0] == 0 and offsets[2] == 0
    assert 1.2 < float(offsets[1]) < 1.8, offsets
    shifted = torch.log_softmax(torch.log_softmax(skewed, -1) + offsets, -1)
    assert torch.allclose(shifted[:, 0] - shifted[:, 2], skewed[:, 0] - skewed[:, 2], atol=1e-5)
    loss = torch.nn.functional.nll_loss
    assert loss(shifted, targets) < loss(torch.log_softmax(skewed, -1), targets)
    # Nothing to fit: no rows, or no label left free.
    assert not fit_label_offsets(torch.empty(0, 3), torch.empty(0, dtype=torch.long), free).any()
    assert not fit_label_offsets(torch.log_softmax(skewed, -1), targets, torch.zeros(3, dtype=torch.bool)).any()


def test_label_offsets_are_fitted_per_language_on_chat_rows_for_the_labels_a_partial_source_lacks():
    from types import SimpleNamespace

    from nlu.data import Example
    from nlu.train import MIN_OFFSET_ROWS, _fit_offsets

    labels = ["negative", "neutral", "positive"]
    gen = torch.Generator().manual_seed(3)
    rows, probs, targets = [], [], []
    for i in range(2 * MIN_OFFSET_ROWS):  # Chinese chat rows, half of them neutral, read as mostly negative
        t = 1 if i % 2 else i % 4 // 2 * 2
        rows.append(Example(f"第{i}条消息", labels[t], "chat.csv"))
        targets.append(t)
        p = torch.softmax(torch.randn(3, generator=gen) + torch.tensor([1.0, -1.0, 0.0]), -1)
        probs.append(p)
    rows += [Example(f"message {i}", "neutral", "chat.csv") for i in range(5)]  # too few English rows
    targets += [1] * 5
    probs += [torch.tensor([0.2, 0.6, 0.2])] * 5
    # The partly labelled source: Chinese reviews (not calibration rows).
    rows += [Example(f"评论{i}", "negative", "reviews.csv") for i in range(3)]
    targets += [0] * 3
    probs += [torch.tensor([0.8, 0.1, 0.1])] * 3
    run = SimpleNamespace(
        cfg=SimpleNamespace(partial_labels=["reviews.csv"], calibrate_on=["chat.csv"]),
        allowed={"reviews.csv": torch.tensor([True, False, True]), "chat.csv": torch.ones(3, dtype=torch.bool)},
        val_rows=rows,
        labels=labels,
    )
    calib = list(range(2 * MIN_OFFSET_ROWS + 5))
    fitted = _fit_offsets(run, torch.stack(probs), torch.tensor(targets), calib)
    assert set(fitted) == {"zh"}  # English has fewer than MIN_OFFSET_ROWS held-out rows
    offsets, n = fitted["zh"]
    assert n == 2 * MIN_OFFSET_ROWS and set(offsets) == {"neutral"} and offsets["neutral"] > 0.5
    # Enough English rows, but no partly labelled source in English: no English offsets.
    many = [Example(f"message {i}", "neutral", "chat.csv") for i in range(2 * MIN_OFFSET_ROWS)]
    run.val_rows = rows + many
    all_probs = torch.cat([torch.stack(probs), torch.tensor([[0.6, 0.2, 0.2]] * len(many))])
    all_targets = torch.tensor(targets + [1] * len(many))
    calib += list(range(len(rows), len(rows) + len(many)))
    assert set(_fit_offsets(run, all_probs, all_targets, calib)) == {"zh"}
    # Without partly labelled sources (the intent model) or without chat rows: nothing.
    run.cfg.partial_labels = []
    assert _fit_offsets(run, all_probs, all_targets, calib) == {}


def test_out_of_scope_is_never_a_confident_intent_in_the_dialogue():
    policy = load_policy()
    sure_oos = Annotation("en", "out_of_scope", 0.97, "neutral", 0.0)
    r = step(ConversationState(), "write me a poem about the sea", sure_oos, policy, 1.0)
    assert r.handoff is None and r.replies[0].kind == "fallback" and r.action == "out_of_scope"
    assert r.state.misunderstood == 0  # understood as no shop matter: no step towards a hand-off
    sure_intent = Annotation("en", "check_refund_policy", 0.97, "neutral", 0.0)
    r = step(ConversationState(), "what's your refund policy", sure_intent, policy, 1.0)
    assert r.replies[0].kind != "fallback" and r.state.misunderstood == 0


# -- the check sets: written apart from the training data, and never trained on ----------------

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def _key(text: str) -> str:
    return _PUNCT.sub("", text.lower())


def _texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def check_files() -> list[Path]:
    return sorted(CHECK_DIR.glob("*.csv")) + sorted(NLU_DATA.glob("*-check.csv"))


def test_check_sets_are_large_enough_and_cover_every_intent():
    with (ROOT / "nlu" / "data" / "check" / "intents-en.csv").open(encoding="utf-8") as fh:
        en = list(csv.DictReader(fh))
    with (ROOT / "nlu" / "data" / "check" / "intents-zh.csv").open(encoding="utf-8") as fh:
        zh = list(csv.DictReader(fh))
    from collections import Counter

    for rows in (en, zh):
        counts = Counter(r["label"] for r in rows)
        assert len(counts) == 27 and min(counts.values()) >= 20, counts
    for name in ("out-of-scope-en.csv", "out-of-scope-zh.csv", "sentiment-chat-en.csv", "sentiment-chat-zh.csv"):
        assert len(_texts(CHECK_DIR / name)) >= 150, name


def test_no_check_set_row_appears_in_any_training_file(data_dir):
    """A check set tells how the models carry to phrasings they never saw; one row in a
    training file would make it a validation set. Compared after lower-casing and
    dropping spaces and punctuation."""
    from nlu.build_default import CALM_REQUESTS, DEFAULTS

    # Every file the default models train on; the derived calm-requests file is made from
    # the intent files named in its spec, which are read here instead.
    named = [f for spec in DEFAULTS.values() for f in (*spec["files"], *spec.get("calm_requests", {}).get("from", []))]
    training = {(f if isinstance(f, Path) else data_dir / f).resolve() for f in named if f != CALM_REQUESTS}
    assert {p.name for p in training} >= {"intents-bitext-en.csv", "sentiment-chat-zh.csv", "intents-en-chat.csv"}
    checks = check_files()
    assert checks and not set(p.resolve() for p in checks) & training
    seen: dict[str, str] = {}
    for path in training:
        for text in _texts(path):
            seen.setdefault(_key(text), path.name)
    leaks = [
        (path.name, text, seen[_key(text)])
        for path in checks
        for text in _texts(path)
        if _key(text) and _key(text) in seen
    ]
    assert not leaks, leaks[:20]


# -- with real (small) models ------------------------------------------------------------------


@pytest.mark.slow
def test_calibration_is_fitted_saved_with_the_model_and_reloaded(small_models):
    from dataclasses import replace

    from nlu.model import load_model

    d = small_models["sentiment_dir"]
    meta = json.loads((d / "nlu_model.json").read_text())
    metrics = small_models["sentiment_metrics"]
    assert meta["temperature"] == metrics["calibration"]["temperature"] != 1.0
    assert metrics["calibration"]["n"] == metrics["validation"]["n"]
    m = load_model(d, "cpu")
    assert m.meta.temperature == meta["temperature"]
    texts = ["thanks a lot", "my bag never arrived", "质量太差", "还行吧"]
    logits = m.logits(texts)
    alone = replace(m, lexical=None).predict_proba(texts)
    assert torch.allclose(alone, torch.softmax(logits / m.meta.temperature, -1), atol=1e-6)
    assert not torch.allclose(alone, torch.softmax(logits, -1), atol=1e-3)
    # A temperature that is not above zero is a broken model directory, not a crash later on.
    import shutil

    from nlu.model import ModelDirError

    broken = d.parent / "sentiment-bad-temperature"
    shutil.copytree(d, broken, dirs_exist_ok=True)
    (broken / "nlu_model.json").write_text(json.dumps({**meta, "temperature": 0}))
    with pytest.raises(ModelDirError, match="temperature"):
        load_model(broken, "cpu")


@pytest.mark.slow
def test_label_offsets_are_saved_with_the_model_and_shift_only_their_language(small_models, tmp_path):
    import shutil

    from nlu.model import ModelDirError, load_model

    d = small_models["sentiment_dir"]
    meta = json.loads((d / "nlu_model.json").read_text())
    shifted_dir = tmp_path / "sentiment-shifted"
    shutil.copytree(d, shifted_dir)
    (shifted_dir / "nlu_model.json").write_text(json.dumps({**meta, "label_offsets": {"zh": {"neutral": 2.0}}}))
    plain, shifted = load_model(d, "cpu"), load_model(shifted_dir, "cpu")
    assert shifted.meta.label_offsets == {"zh": {"neutral": 2.0}}
    texts = ["快递到哪了", "退货怎么弄", "where is my parcel", "10023"]
    a, b = plain.predict_proba(texts), shifted.predict_proba(texts)
    neu, neg, pos = (plain.labels.index(x) for x in ("neutral", "negative", "positive"))
    assert (b[:2, neu] > a[:2, neu]).all()  # Chinese: neutral more likely ...
    assert torch.allclose(b[:2, neg] / b[:2, pos], a[:2, neg] / a[:2, pos], rtol=1e-4)  # ... neg vs pos as before
    assert torch.allclose(b[2:], a[2:])  # English and a bare number: untouched
    for bad in ({"xx": {"neutral": 1.0}}, {"zh": {"angry": 1.0}}, {"zh": {"neutral": 50}}):
        (shifted_dir / "nlu_model.json").write_text(json.dumps({**meta, "label_offsets": bad}))
        with pytest.raises(ModelDirError, match="label_offsets"):
            load_model(shifted_dir, "cpu")


@pytest.mark.slow
def test_a_partly_labelled_source_is_scored_within_its_own_labels(small_models):
    metrics = small_models["sentiment_metrics"]
    reviews = Path(small_models["sentiment_csvs"][1]).name
    assert metrics["hyperparameters"]["partial_labels"] == [reviews]
    within = metrics["validation_within_own_labels"][reviews]
    assert within["n"] == metrics["validation_by_source"][reviews]["n"]
    # Within negative/positive the model can only do as well or better than over three labels.
    assert within["accuracy"] >= metrics["validation_by_source"][reviews]["accuracy"]


@pytest.mark.slow
def test_out_of_scope_messages_are_told_from_requests(tmp_path, pipeline_models):
    """The pipeline's intent model has an out_of_scope class (the project's own chat rows); the
    copy here is the one nlu.thresholds reads (its metrics name the chat files)."""
    import shutil

    from nlu.inference import NLU

    shutil.copytree(pipeline_models, tmp_path / "m", ignore=shutil.ignore_patterns("*.csv"))
    nlu = NLU.load(tmp_path / "m" / "intent", tmp_path / "m" / "sentiment", device="cpu")
    clear_oos = ["write me a poem about the ocean", "what is the capital of france", "book me a flight to rome"]
    requests = ["where is my order?", "i want to cancel my order", "please refund my money"]
    anns = nlu.annotate(clear_oos + requests)
    assert [a.intent for a in anns[:3]] == ["out_of_scope"] * 3, anns[:3]
    assert all(a.intent != "out_of_scope" for a in anns[3:]), anns[3:]

    # nlu.thresholds chooses the dialogue's thresholds on the held-out rows of the files the
    # models were calibrated on, and keeps to the shares it is given.
    options = ["--calm-apology", "0.1", "--min-intent-confidence", "0.4"]

    def calibrated_on(task: str, name: str) -> None:
        meta = json.loads((tmp_path / "m" / task / "metrics.json").read_text())
        meta["hyperparameters"]["calibrate_on"] = [name]
        (tmp_path / "m" / task / "metrics.json").write_text(json.dumps(meta))

    r = run_main("nlu.thresholds", "--models", str(tmp_path / "m"), *options)
    assert r.returncode == 2 and "intent model names no chat files" in r.stderr
    calibrated_on("intent", "intents-chat.csv")
    r = run_main("nlu.thresholds", "--models", str(tmp_path / "m"), *options)
    assert r.returncode == 2 and "sentiment model names no chat files" in r.stderr
    calibrated_on("sentiment", "sentiment-chat.csv")
    r = run_main("nlu.thresholds", "--models", str(tmp_path / "m"), *options)
    assert r.returncode == 0, r.stderr[-2000:]
    chosen = json.loads(r.stdout)
    assert -1 <= chosen["mood.negative_score"] <= 0 and -1 <= chosen["thresholds.angry_sentiment_score"] <= 0
    assert chosen["thresholds.angry_sentiment_score"] <= chosen["mood.negative_score"]
    assert chosen["dev_sentiment"]["calm_apologised"] <= 0.1 and chosen["dev_sentiment"]["calm_angry"] <= 0.01
    assert chosen["dev_intent"]["n_out_of_scope"] > 0 and chosen["dev_intent"]["n_requests"] > 0
    assert chosen["thresholds.min_intent_confidence"] == 0.4
    by = chosen["dev_intent_by_threshold"]
    assert chosen["dev_intent"]["requests_rejected"] == by["0.4"]["requests_rejected"]
    # A higher threshold turns away at least as many requests and accepts no more out-of-scope rows.
    assert by["0.3"]["requests_rejected"] <= by["0.5"]["requests_rejected"] <= by["0.9"]["requests_rejected"]
    assert by["0.3"]["out_of_scope_accepted"] >= by["0.9"]["out_of_scope_accepted"]


def test_the_loosest_threshold_flags_no_more_calm_messages_than_allowed():
    from nlu.thresholds import loosest

    calm = [-0.95, -0.9, -0.5, 0.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert loosest(calm, 0.0) < -0.95  # none flagged
    t = loosest(calm, 0.2)  # two of ten may be flagged
    assert sum(c <= t for c in calm) == 2 and -0.9 <= t < -0.5
    assert loosest([1.0] * 10, 0.05) == 0.0  # nothing read as negative: every negative reading counts
