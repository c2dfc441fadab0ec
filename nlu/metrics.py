"""Classification figures shared by training, evaluation and benchmarks."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

# Bitext's linguistic flags, for robustness figures on the intent data.
FLAG_NAMES = {
    "Z": "typos",
    "Q": "colloquial",
    "W": "offensive",
    "K": "keyword_only",
    "P": "polite",
    "I": "interrogative",
    "E": "expanded",
    "C": "coordinated",
    "L": "lexical_variation",
    "M": "morphological_variation",
}


def classification_report(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, object]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        label: {
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f[i]), 4),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    }
    present = [label for label in labels if label in set(y_true)]
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)), 4),
        "n": len(y_true),
        "per_class": per_class,
    }


def worst_confusions(y_true: list[str], y_pred: list[str], top: int = 10) -> list[dict[str, object]]:
    pairs = Counter((t, p) for t, p in zip(y_true, y_pred, strict=True) if t != p)
    return [{"true": t, "predicted": p, "count": n} for (t, p), n in pairs.most_common(top)]


def accuracy_by_group(y_true: list[str], y_pred: list[str], groups: list[str]) -> dict[str, dict[str, float]]:
    hits: dict[str, list[int]] = defaultdict(list)
    for t, p, g in zip(y_true, y_pred, groups, strict=True):
        hits[g].append(int(t == p))
    return {g: {"accuracy": round(float(np.mean(h)), 4), "n": len(h)} for g, h in sorted(hits.items())}


def accuracy_by_flag(y_true: list[str], y_pred: list[str], flags: list[str]) -> dict[str, dict[str, float]]:
    hits: dict[str, list[int]] = defaultdict(list)
    for t, p, fl in zip(y_true, y_pred, flags, strict=True):
        for ch in fl:
            if ch in FLAG_NAMES:
                hits[FLAG_NAMES[ch]].append(int(t == p))
    return {g: {"accuracy": round(float(np.mean(h)), 4), "n": len(h)} for g, h in sorted(hits.items())}


def plot_confusion(y_true: list[str], y_pred: list[str], labels: list[str], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.38 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def format_report(report: dict[str, object], confusions: list[dict[str, object]]) -> str:
    lines = [f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   n {report['n']}", ""]
    lines.append(f"{'label':32} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>6}")
    for label, m in report["per_class"].items():  # type: ignore[union-attr]
        lines.append(f"{label:32} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['support']:6d}")
    if confusions:
        lines += ["", "worst confusions (true -> predicted: count)"]
        lines += [f"  {c['true']} -> {c['predicted']}: {c['count']}" for c in confusions]
    return "\n".join(lines)
