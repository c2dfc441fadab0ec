"""Classify texts with a trained model.

python -m nlu.predict --model models/intent "where is my order?" "我的快递到哪了"
"""

from __future__ import annotations

import argparse
import json
import sys

from .model import ModelDirError, load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nlu.predict", description="Classify texts with a trained model.")
    ap.add_argument("--model", required=True, help="model directory written by nlu.train")
    ap.add_argument("--top-k", type=int, default=3, help="alternatives shown per text")
    ap.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    ap.add_argument("--device", default=None)
    ap.add_argument("--int8", action="store_true", help="int8 weights on CPU, as the workers serve by default")
    ap.add_argument("texts", nargs="+", help="texts to classify")
    args = ap.parse_args(argv)
    texts = [t for t in args.texts if t.strip()]
    if len(texts) != len(args.texts):
        print("nlu.predict: error: empty texts cannot be classified", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, args.device, int8=args.int8)
    except ModelDirError as exc:
        print(f"nlu.predict: error: {exc}", file=sys.stderr)
        return 2
    probs = model.predict_proba(texts)
    k = min(args.top_k, len(model.labels))
    top_p, top_i = probs.topk(k, dim=1)
    for row, text in enumerate(texts):
        alts = [(model.labels[j], round(float(p), 4)) for p, j in zip(top_p[row], top_i[row], strict=True)]
        if args.json:
            print(
                json.dumps(
                    {"text": text, "label": alts[0][0], "confidence": alts[0][1], "top_k": alts}, ensure_ascii=False
                )
            )
        else:
            others = ", ".join(f"{label} {p:.3f}" for label, p in alts[1:])
            print(f"{alts[0][0]}\t{alts[0][1]:.3f}\t{text}" + (f"\t(also: {others})" if others else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
