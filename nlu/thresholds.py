"""Choose the dialogue's thresholds on a chat development set, not by hand.

    python -m nlu.thresholds [--models DIR]

The development set is the held-out validation rows of the chat files the
models were trained with (``calibrate_on`` in their ``metrics.json``: phrasings
and chat messages written for this project, never trained on), served through
the same runtime as the workers. Prints, for ``dialogue/policies.yaml``:

* ``mood.negative_score`` (an apology before the answer): the loosest score
  at which at most ``--calm-apology`` of the calm messages (neutral or
  positive) would get an apology;
* ``thresholds.angry_sentiment_score`` (counts toward a hand-off for anger):
  the loosest score with at most ``--calm-angry`` of calm messages counted angry;
and, for ``thresholds.min_intent_confidence`` (given, not chosen: the intent
confidence is calibrated, so 0.5 means "as likely right as wrong"), the share of
real requests it turns away (called out of scope, or below it) and the share of
out-of-scope rows it still accepts, at that threshold and its neighbours.

The check sets (``nlu/data/check/``) are never used here: they report, these choose.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

OUT_OF_SCOPE = "out_of_scope"


def loosest(scores_calm: list[float], max_share: float) -> float:
    """The highest threshold t with share(calm score <= t) <= max_share (scores
    of calm messages the model reads as negative; others count as never flagged)."""
    ranked = sorted(scores_calm)
    allowed = int(max_share * len(ranked))  # how many calm messages may be flagged
    if allowed >= len(ranked):
        return 0.0
    # Flag strictly fewer than ranked[allowed]: halfway to the next lower score.
    t = math.floor((ranked[allowed] - 1e-4) * 1000) / 1000  # rounded down: never flags more than chosen
    return max(-1.0, min(0.0, t))


def _flag_scores(anns, rows, calm: bool) -> list[float]:
    """Sentiment scores of the calm (or the negative) rows; a message not read as
    negative is never apologised to, whatever its score (as in the dialogue)."""
    return [
        a.sentiment_score if a.sentiment == "negative" else 1.0
        for a, e in zip(anns, rows, strict=True)
        if (e.label != "negative") == calm
    ]


def _share(values: list[float], threshold: float) -> float:
    return round(sum(v <= threshold for v in values) / max(1, len(values)), 4)


def choose(nlu, intent_dev, sentiment_dev, calm_apology: float, calm_angry: float, min_confidence: float) -> dict:
    anns = nlu.annotate([e.text for e in sentiment_dev])
    calm, neg = _flag_scores(anns, sentiment_dev, True), _flag_scores(anns, sentiment_dev, False)
    apology, angry = loosest(calm, calm_apology), loosest(calm, calm_angry)
    out: dict[str, object] = {
        "mood.negative_score": apology,
        "thresholds.angry_sentiment_score": angry,
        "dev_sentiment": {
            "n_calm": len(calm),
            "n_negative": len(neg),
            "calm_apologised": _share(calm, apology),
            "negative_apologised": _share(neg, apology),
            "calm_angry": _share(calm, angry),
            "negative_angry": _share(neg, angry),
        },
    }
    ia = nlu.annotate([e.text for e in intent_dev])
    real = [(a, e) for a, e in zip(ia, intent_dev, strict=True) if e.label != OUT_OF_SCOPE]
    oos = [a for a, e in zip(ia, intent_dev, strict=True) if e.label == OUT_OF_SCOPE]

    def rates(threshold: float) -> dict[str, float]:
        def accepted(a) -> bool:
            return a.intent != OUT_OF_SCOPE and a.intent_confidence >= threshold

        n = max(1, len(real))
        return {
            "requests_rejected": round(sum(not accepted(a) for a, _ in real) / n, 4),
            "requests_right_and_kept": round(sum(accepted(a) and a.intent == e.label for a, e in real) / n, 4),
            "out_of_scope_accepted": round(sum(map(accepted, oos)) / max(1, len(oos)), 4),
        }

    out["thresholds.min_intent_confidence"] = min_confidence
    out["dev_intent"] = {"n_requests": len(real), "n_out_of_scope": len(oos), **rates(min_confidence)}
    out["dev_intent_by_threshold"] = {f"{t:.1f}": rates(t) for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}
    return out


def main(argv: list[str] | None = None) -> int:
    from .data import validation_of
    from .inference import NLU, models_dir
    from .model import ModelDirError
    from .versions import VersionError, in_folder

    ap = argparse.ArgumentParser(prog="python -m nlu.thresholds", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--models",
        type=Path,
        default=None,
        help="models folder (its current version) or a version folder (default models/)",
    )
    ap.add_argument("--calm-apology", type=float, default=0.03, help="share of calm messages that may get an apology")
    ap.add_argument("--calm-angry", type=float, default=0.01, help="share of calm messages that may count as angry")
    ap.add_argument(
        "--min-intent-confidence", type=float, default=0.5, help="the intent threshold to report rates at (0.5)"
    )
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    try:
        base = in_folder(args.models or models_dir()).path
        metrics = {t: json.loads((base / t / "metrics.json").read_text()) for t in ("intent", "sentiment")}
    except (VersionError, OSError, ValueError) as exc:
        print(f"nlu.thresholds: error: {exc}", file=sys.stderr)
        return 2
    dev = {}
    for task, m in metrics.items():  # before the models load: a wrong folder says so at once
        sources = m["hyperparameters"].get("calibrate_on") or []
        if not sources:
            print(f"nlu.thresholds: error: the {task} model names no chat files (calibrate_on)", file=sys.stderr)
            return 2
        dev[task] = validation_of(m, sources)
    try:
        nlu = NLU.load(base / "intent", base / "sentiment", device=args.device)
    except (ModelDirError, OSError) as exc:
        print(f"nlu.thresholds: error: {exc}", file=sys.stderr)
        return 2
    result = choose(
        nlu, dev["intent"], dev["sentiment"], args.calm_apology, args.calm_angry, args.min_intent_confidence
    )
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
