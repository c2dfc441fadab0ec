"""NLU benchmark: training time, quality against the TF-IDF baseline, inference speed.

    python bench/bench_nlu.py                 # train defaults into bench/results/models, then measure
    python bench/bench_nlu.py --models models # measure existing models only (no training)

Targets (issue "NLU"): both default models trained in <= 20 min on the 2-core
CPU; >= 150 messages/s batched for both models together; English intent >= 0.97,
sentiment >= 0.85 (English) and >= 0.94 (Chinese) on the validation splits.
Quality and speed are measured for the models as trained and, on CPU, with int8
weights (the SHOPBOT_NLU_INT8 option). Results go to bench/results/nlu-<device>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nlu.build_default import DEFAULTS, build, data_dir  # noqa: E402
from nlu.inference import NLU  # noqa: E402

CHECK = ROOT / "nlu" / "data" / "check"
# Phrasings written apart from every training file and never trained or tuned on
# (tests/test_chat_nlu.py fails if one of their rows is in a training file).
INTENT_CHECK_SETS = {
    "en": CHECK / "intents-en.csv",
    "zh": CHECK / "intents-zh.csv",
    "en_small": ROOT / "nlu" / "data" / "intents-en-check.csv",
    "zh_small": ROOT / "nlu" / "data" / "intents-zh-check.csv",
}
OOS_CHECK_SETS = {"en": CHECK / "out-of-scope-en.csv", "zh": CHECK / "out-of-scope-zh.csv"}
SENTIMENT_CHECK_SETS = {"en": CHECK / "sentiment-chat-en.csv", "zh": CHECK / "sentiment-chat-zh.csv"}
OUT_OF_SCOPE = "out_of_scope"


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def policy_thresholds() -> dict[str, float]:
    from dialogue.policy import load_policy

    p = load_policy()
    return {
        "min_intent_confidence": p.min_intent_confidence,
        "apology_score": p.mood.negative_score,
        "angry_score": p.angry_sentiment_score,
    }


class Baseline:
    """The TF-IDF + logistic regression model fitted on a default model's training
    files (all their rows), used the same way as the model: argmax, confidence."""

    def __init__(self, task: str, labels: list[str], data: Path):
        from nlu.build_default import CALM_REQUESTS
        from nlu.lexical import LexicalModel

        files = [f if isinstance(f, Path) else data / f for f in DEFAULTS[task]["files"] if f != CALM_REQUESTS]
        rows = [r for f in files for r in read(f)]
        self.labels = labels
        self.model = LexicalModel.fit([r["text"] for r in rows], [r["label"] for r in rows], labels)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        probs = self.model.log_proba(texts).exp()
        conf, idx = probs.max(1)
        return [(self.labels[i], float(c)) for i, c in zip(idx.tolist(), conf.tolist(), strict=True)]


def intent_quality(nlu: NLU, base: Baseline) -> dict[str, object]:
    """Intent check sets (in scope), and the out-of-scope decision at the policy's
    min_intent_confidence: false accepts on out-of-scope sets, false rejects on the
    intent check sets. Transformer against the TF-IDF baseline, same decision rule."""
    from nlu.calibration import expected_calibration_error
    from nlu.metrics import classification_report

    th = policy_thresholds()["min_intent_confidence"]
    out: dict[str, object] = {"min_intent_confidence": th}
    label_id = {label: i for i, label in enumerate(nlu.intent.labels)}
    for name, path in INTENT_CHECK_SETS.items():
        rows = read(path)
        texts, truth = [r["text"] for r in rows], [r["label"] for r in rows]
        anns = nlu.annotate(texts)
        pred = [a.intent for a in anns]
        rep = classification_report(truth, pred, sorted(set(truth) | set(pred)))
        b = base.predict(texts)
        brep = classification_report(truth, [p for p, _ in b], sorted(set(truth) | {p for p, _ in b}))
        logits = nlu.intent.logits(texts)
        targets = torch.tensor([label_id[t] for t in truth])
        recall = {k: v["recall"] for k, v in rep["per_class"].items() if k in set(truth)}  # type: ignore[union-attr]
        out[f"check_{name}"] = {
            "n": len(truth),
            "accuracy": rep["accuracy"],
            "macro_f1": rep["macro_f1"],
            "baseline_accuracy": brep["accuracy"],
            "baseline_macro_f1": brep["macro_f1"],
            "rejected": round(sum(a.intent == OUT_OF_SCOPE or a.intent_confidence < th for a in anns) / len(anns), 4),
            "baseline_rejected": round(sum(p == OUT_OF_SCOPE or c < th for p, c in b) / len(b), 4),
            "right_and_kept": round(
                sum(a.intent == t and a.intent_confidence >= th for a, t in zip(anns, truth, strict=True)) / len(anns),
                4,
            ),
            "ece_served": expected_calibration_error(torch.softmax(logits / nlu.intent.meta.temperature, -1), targets),
            "ece_uncalibrated": expected_calibration_error(torch.softmax(logits, -1), targets),
            "worst_recall": dict(sorted(recall.items(), key=lambda kv: kv[1])[:5]),
        }
    for name, path in OOS_CHECK_SETS.items():
        rows = read(path)
        anns = nlu.annotate([r["text"] for r in rows])
        b = base.predict([r["text"] for r in rows])
        accepted = [a.intent != OUT_OF_SCOPE and a.intent_confidence >= th for a in anns]
        b_acc = [p != OUT_OF_SCOPE and c >= th for p, c in b]
        cats = sorted({r["category"] for r in rows})
        out[f"out_of_scope_{name}"] = {
            "n": len(rows),
            "false_accepts": round(sum(accepted) / len(rows), 4),
            "baseline_false_accepts": round(sum(b_acc) / len(rows), 4),
            "by_category": {
                c: round(sum(x for x, r in zip(accepted, rows, strict=True) if r["category"] == c)
                         / sum(r["category"] == c for r in rows), 4)
                for c in cats
            },
            "accepted_examples": [
                [r["text"], a.intent, a.intent_confidence] for x, r, a in zip(accepted, rows, anns, strict=True) if x
            ][:8],
        }  # fmt: skip
    probe = nlu.annotate(["我的快递到哪了"])[0]
    out["我的快递到哪了"] = {"intent": probe.intent, "confidence": probe.intent_confidence}
    return out


def sentiment_quality(nlu: NLU, base: Baseline) -> dict[str, object]:
    """Chat sentiment check sets: accuracy, calm messages read as negative, recall of
    negative; and the dialogue's decisions at the policy's thresholds (an apology,
    a count toward an angry hand-off)."""
    from nlu.metrics import classification_report

    th = policy_thresholds()
    out: dict[str, object] = {"apology_score": th["apology_score"], "angry_score": th["angry_score"]}
    for lang, path in SENTIMENT_CHECK_SETS.items():
        rows = read(path)
        texts, truth = [r["text"] for r in rows], [r["label"] for r in rows]
        anns = nlu.annotate(texts)
        pred = [a.sentiment for a in anns]
        b = [p for p, _ in base.predict(texts)]
        labels = ["negative", "neutral", "positive"]
        calm = [i for i, t in enumerate(truth) if t != "negative"]
        neg = [i for i, t in enumerate(truth) if t == "negative"]

        def flagged(i: int, limit: float, anns=anns) -> bool:
            return anns[i].sentiment == "negative" and anns[i].sentiment_score <= limit

        kinds = sorted({r.get("kind", "") for r in rows} - {""})
        out[lang] = {
            "n": len(rows),
            "accuracy": classification_report(truth, pred, labels)["accuracy"],
            "macro_f1": classification_report(truth, pred, labels)["macro_f1"],
            "calm_read_as_negative": round(sum(pred[i] == "negative" for i in calm) / len(calm), 4),
            "negative_recall": round(sum(pred[i] == "negative" for i in neg) / len(neg), 4),
            "baseline_accuracy": classification_report(truth, b, labels)["accuracy"],
            "baseline_calm_read_as_negative": round(sum(b[i] == "negative" for i in calm) / len(calm), 4),
            "baseline_negative_recall": round(sum(b[i] == "negative" for i in neg) / len(neg), 4),
            "calm_apologised": round(sum(flagged(i, th["apology_score"]) for i in calm) / len(calm), 4),
            "negative_apologised": round(sum(flagged(i, th["apology_score"]) for i in neg) / len(neg), 4),
            "calm_counted_angry": round(sum(flagged(i, th["angry_score"]) for i in calm) / len(calm), 4),
            "negative_counted_angry": round(sum(flagged(i, th["angry_score"]) for i in neg) / len(neg), 4),
            "accuracy_by_kind": {
                k: round(sum(pred[i] == truth[i] for i, r in enumerate(rows) if r.get("kind") == k)
                         / sum(r.get("kind") == k for r in rows), 3)
                for k in kinds
            },
            "calm_read_as_negative_examples": [texts[i] for i in calm if pred[i] == "negative"][:8],
        }  # fmt: skip
    return out


def add_typos(text: str, rng: random.Random, per_text: int = 2) -> str:
    """Drop, double, swap or replace a letter, ``per_text`` times."""
    chars = list(text)
    for _ in range(per_text):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if len(letters) < 3:
            break
        i = rng.choice(letters[:-1])
        op = rng.randrange(4)
        if op == 0:
            del chars[i]
        elif op == 1:
            chars.insert(i, chars[i])
        elif op == 2:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return "".join(chars)


def typo_robustness(nlu: NLU, metrics: dict[str, object]) -> dict[str, object]:
    """The intent validation split again (same files, seed, fraction), with two
    injected typos per message: transformer vs the TF-IDF baseline."""
    from nlu.data import load_datasets, stratified_split
    from nlu.lexical import LexicalModel

    hp = metrics["hyperparameters"]
    ds = load_datasets([f["path"] for f in metrics["data_files"]])  # type: ignore[index]
    train_rows, val_rows = stratified_split(ds.examples, hp["val_fraction"], hp["seed"])  # type: ignore[index]
    val_rows = [e for e in val_rows if e.source == "intents-bitext-en.csv"]
    rng = random.Random(7)
    noisy = [add_typos(e.text, rng) for e in val_rows]
    truth = [e.label for e in val_rows]
    pipe = LexicalModel.fit([e.text for e in train_rows], [e.label for e in train_rows], ds.labels)
    acc = sum(a.intent == t for a, t in zip(nlu.annotate(noisy), truth, strict=True)) / len(truth)
    base = sum(p == t for p, t in zip(pipe.predict(noisy), truth, strict=True)) / len(truth)
    return {
        "n": len(truth),
        "typos_per_message": 2,
        "transformer_accuracy": round(acc, 4),
        "baseline_accuracy": round(base, 4),
        "example": noisy[0],
    }


def _data_path(path: str, models: Path) -> str:
    """A training file's path as metrics.json gives it; a derived file (calm requests) is looked for in the
    models folder's ``.data`` when the folder was moved since training."""
    moved = models / ".data" / Path(path).name
    return str(moved) if not Path(path).is_file() and moved.is_file() else path


def validation_quality(nlu: NLU, models: Path) -> dict[str, dict[str, float]]:
    """Accuracy on each model's validation split (same files, seed and fraction as its
    training), per source file, computed through ``nlu`` (so int8 serving is measured too)."""
    from nlu.data import load_datasets, stratified_split

    out: dict[str, dict[str, float]] = {}
    for task in ("intent", "sentiment"):
        m = json.loads((models / task / "metrics.json").read_text())
        hp = m["hyperparameters"]
        ds = load_datasets([_data_path(f["path"], models) for f in m["data_files"]])
        _, val = stratified_split(ds.examples, hp["val_fraction"], hp["seed"])
        anns = nlu.annotate([e.text for e in val])
        got = [a.intent if task == "intent" else a.sentiment for a in anns]
        res: dict[str, float] = {}
        for source in sorted({e.source for e in val}):
            pairs = [(g, e.label) for g, e in zip(got, val, strict=True) if e.source == source]
            res[source] = round(sum(g == t for g, t in pairs) / len(pairs), 4)
        # A source without neutral (reviews) is also scored between the labels it has:
        # negative when the score is below 0, positive otherwise.
        for source in hp.get("partial_labels") or []:
            pairs = [(a, e.label) for a, e in zip(anns, val, strict=True) if e.source == source]
            right = sum(("negative" if a.sentiment_score < 0 else "positive") == t for a, t in pairs)
            res[f"{source} (within its own labels)"] = round(right / len(pairs), 4)
        out[task] = res
    return out


def chat_messages(data: Path, n: int = 2000, seed: int = 0) -> list[str]:
    """A stand-in for shop chat traffic: half customer-service utterances, a
    quarter support messages, a quarter short Chinese shopper texts."""
    rng = random.Random(seed)
    utter = [r["text"] for r in read(data / "intents-bitext-en.csv")]
    support = [r["text"] for r in read(data / "sentiment-support-tweets-en.csv")]
    zh = [r["text"] for r in read(data / "sentiment-shopping-reviews-zh.csv") if len(r["text"]) <= 60]
    msgs = rng.sample(utter, n // 2) + rng.sample(support, n // 4) + rng.sample(zh, n // 4)
    rng.shuffle(msgs)
    return msgs


def speed(nlu: NLU, data: Path, seconds: float) -> dict[str, object]:
    msgs = chat_messages(data)
    tok = nlu.intent.tokenizer
    lengths = sorted(len(tok(nlu.intent.meta.text_prefix + m)["input_ids"]) for m in msgs)
    result: dict[str, object] = {
        "messages": "50% intent utterances, 25% support tweets, 25% Chinese reviews <= 60 chars",
        "tokens_p50_p90_max": [lengths[len(lengths) // 2], lengths[int(len(lengths) * 0.9)], lengths[-1]],
        "throughput_msgs_per_s": {},
    }
    nlu.annotate(msgs[:64])  # warm-up
    for bs in (1, 8, 32, 128):
        n, i, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if i + bs > len(msgs):
                i = 0
            nlu.annotate(msgs[i : i + bs])
            i += bs
            n += bs
        result["throughput_msgs_per_s"][str(bs)] = round(n / (time.perf_counter() - t0), 1)  # type: ignore[index]
    lat = []
    for t in msgs[:300]:
        t0 = time.perf_counter()
        nlu.annotate([t])
        lat.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(lat, n=100)
    result["single_message_latency_ms"] = {"p50": round(q[49], 1), "p99": round(q[98], 1)}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, default=None, help="measure these models; skip training")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    args = ap.parse_args()
    data = args.data_dir or data_dir()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    models = args.models
    if models is None:
        models = out_dir / "models"
        t0 = time.perf_counter()
        build(data, models, force=True)
        report["training_seconds_both"] = round(time.perf_counter() - t0, 1)
    for task in ("intent", "sentiment"):
        m = json.loads((models / task / "metrics.json").read_text())
        report[f"{task}_validation"] = {
            "served": m["validation"],
            # Set when the model blends in its lexical model (nlu.lexical).
            "transformer_alone": m.get("validation_transformer_alone") or None,
            "baseline": {k: m["baseline"].get(k) for k in ("accuracy", "macro_f1")},
            "by_source": m["validation_by_source"],
            "baseline_by_source": m["baseline"].get("by_source"),
            "training_seconds": m["total_seconds"],
        }
        if task == "intent":
            report["intent_by_flag"] = m["validation_by_flag"]
    # The models as trained (fp32; fp16 on CUDA) and, on CPU, with int8 weights
    # (the SHOPBOT_NLU_INT8 option): quality and speed of each.
    report["serving"] = {}
    labels = {t: json.loads((models / t / "labels.json").read_text()) for t in ("intent", "sentiment")}
    baselines = {t: Baseline(t, labels[t], data) for t in ("intent", "sentiment")}
    for int8 in (False, True):
        nlu = NLU.load(models / "intent", models / "sentiment", device=args.device, int8=int8)
        if int8 and not nlu.int8:
            break  # int8 is a CPU mode
        report["device"] = str(nlu.device)
        report["shared_layers"] = nlu.shared_depth  # encoder layers run once for both models
        report["serving"]["int8" if int8 else "as trained"] = {
            "validation_by_source": validation_quality(nlu, models),
            "intent_check_sets_and_out_of_scope": intent_quality(nlu, baselines["intent"]),
            "chat_sentiment_check_sets": sentiment_quality(nlu, baselines["sentiment"]),
            "intent_validation_with_typos": typo_robustness(
                nlu, json.loads((models / "intent" / "metrics.json").read_text())
            ),
            "speed": speed(nlu, data, args.seconds),
        }
    path = out_dir / f"nlu-{nlu.device.type}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
