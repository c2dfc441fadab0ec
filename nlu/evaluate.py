"""Evaluate a trained model on a labelled CSV.

    python -m nlu.evaluate --model models/intent --data test.csv

Prints accuracy, macro-F1, per-class figures and the worst confusions; the last
line is one JSON object with ``accuracy``, ``macro_f1`` and ``n``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .data import DataError, read_csv
from .metrics import accuracy_by_flag, accuracy_by_group, classification_report, format_report, worst_confusions
from .model import ModelDirError, load_model


def evaluate(model_dir: str, data: str, device: str | None = None, int8: bool = False) -> tuple[dict[str, object], str]:
    model = load_model(model_dir, device, int8=int8)
    examples, _ = read_csv(data)
    unknown = sorted({e.label for e in examples} - set(model.labels))
    probs = model.predict_proba([e.text for e in examples])
    pred = [model.labels[i] for i in probs.argmax(1).tolist()]
    truth = [e.label for e in examples]
    labels = model.labels + unknown
    report = classification_report(truth, pred, labels)
    confusions = worst_confusions(truth, pred)
    text = format_report(report, confusions)
    if unknown:
        text += f"\n\nnote: labels the model does not know (always counted wrong): {', '.join(unknown)}"
    by_flag = accuracy_by_flag(truth, pred, [e.flags for e in examples])
    if by_flag:
        text += "\n\naccuracy by flag: " + ", ".join(f"{k} {v['accuracy']:.3f} ({v['n']})" for k, v in by_flag.items())
    from .language import detect_language

    by_lang = accuracy_by_group(truth, pred, [detect_language(e.text) for e in examples])
    if len(by_lang) > 1:
        text += "\naccuracy by language: " + ", ".join(
            f"{k} {v['accuracy']:.3f} ({v['n']})" for k, v in by_lang.items()
        )
    summary = {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "n": report["n"],
        "model": str(model.path),
        "task": model.meta.task,
        "int8": int8 and model.device.type == "cpu",
        "data": data,
        "worst_confusions": confusions[:5],
        "by_language": by_lang,
    }
    return summary, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nlu.evaluate", description="Evaluate a model on a labelled CSV.")
    ap.add_argument("--model", required=True, help="model directory written by nlu.train")
    ap.add_argument("--data", required=True, help="CSV with text,label columns")
    ap.add_argument("--device", default=None)
    ap.add_argument("--int8", action="store_true", help="int8 weights on CPU, as the workers serve by default")
    args = ap.parse_args(argv)
    try:
        summary, text = evaluate(args.model, args.data, args.device, args.int8)
    except (DataError, ModelDirError) as exc:
        print(f"nlu.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
