"""Labelled CSV loading, validation and the stratified split."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MIN_EXAMPLES_PER_LABEL = 5
_MENTION = re.compile(r"@\w+")
_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACES = re.compile(r"\s+")


class DataError(ValueError):
    """A training or evaluation file is unusable; the message says why and where."""


def normalize_text(text: str) -> str:
    """The same clean-up at training and at inference: handles and links carry
    no meaning for a shop (and would teach the model airline names)."""
    text = _URL.sub("http", text)
    text = _MENTION.sub("@user", text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str  # file name it came from
    flags: str = ""


@dataclass
class Dataset:
    examples: list[Example]
    files: list[dict[str, object]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({e.label for e in self.examples})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_csv(path: str | Path) -> tuple[list[Example], dict[str, object]]:
    """Read one UTF-8 CSV with ``text`` and ``label`` columns.

    Raises :class:`DataError` for a missing file, missing columns, bad encoding
    or empty text/label cells (with their line numbers).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in ("text", "label") if c not in columns]
            if missing:
                raise DataError(
                    f"{p}: the header must have 'text' and 'label' columns; missing {', '.join(missing)}"
                    f" (found: {', '.join(columns) or 'no header'})"
                )
            examples: list[Example] = []
            empty: list[int] = []
            for row in reader:
                text = (row.get("text") or "").strip()
                label = (row.get("label") or "").strip()
                if not text or not label:
                    empty.append(reader.line_num)
                    continue
                examples.append(Example(text, label, p.name, (row.get("flags") or "").strip()))
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{p}: not a valid CSV ({exc})") from exc
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"{p}: {len(empty)} row(s) with an empty text or label, at line(s) {shown}")
    if not examples:
        raise DataError(f"{p}: no rows")
    info = {"path": str(p), "name": p.name, "rows": len(examples), "sha256": sha256_of(p)}
    return examples, info


def load_datasets(paths: list[str | Path]) -> Dataset:
    examples: list[Example] = []
    files = []
    for path in paths:
        ex, info = read_csv(path)
        examples.extend(ex)
        files.append(info)
    return Dataset(examples, files)


def check_label_counts(examples: list[Example], minimum: int = MIN_EXAMPLES_PER_LABEL) -> None:
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise DataError(f"need at least 2 labels to train a classifier, found {len(counts)}: {list(counts)}")
    few = {label: n for label, n in counts.items() if n < minimum}
    if few:
        listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(few.items()))
        raise DataError(
            f"label(s) with fewer than {minimum} examples, too few to train and validate: {listed}."
            " Add examples or remove those rows."
        )


def stratified_split(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_fraction`` of every (source file, label) group."""
    from sklearn.model_selection import train_test_split

    strata = [f"{e.source}\t{e.label}" for e in examples]
    counts = Counter(strata)
    # A stratum too small to split goes whole into training.
    idx_split = [i for i, s in enumerate(strata) if counts[s] >= 2]
    idx_keep = [i for i, s in enumerate(strata) if counts[s] < 2]
    tr, va = train_test_split(
        idx_split, test_size=val_fraction, random_state=seed, stratify=[strata[i] for i in idx_split]
    )
    return [examples[i] for i in sorted(tr + idx_keep)], [examples[i] for i in sorted(va)]


def validation_of(metrics: dict, sources: list[str] | None = None) -> list[Example]:
    """The validation split a model was scored on (same files, seed and fraction as
    its training, from its ``metrics.json``), optionally only rows of ``sources``."""
    hp = metrics["hyperparameters"]
    ds = load_datasets([f["path"] for f in metrics["data_files"]])
    _, val = stratified_split(ds.examples, hp["val_fraction"], hp["seed"])
    return [e for e in val if not sources or e.source in sources]
