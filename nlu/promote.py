"""Make a candidate model version current, if the frozen check sets say it is no worse.

    python -m nlu.promote CANDIDATE [--models models] [--tolerance 0.01] [--check-dir nlu/data/check]
        [--corrections FILE ...] [--database-url URL] [--since DATE] [--device cpu] [--int8] [--dry-run]
    python -m nlu.promote --rollback [--models models]

CANDIDATE is a version in ``models/versions/`` (what ``nlu.build_default
--feedback`` wrote), ``flat``, or a folder holding ``intent/`` and
``sentiment/`` (copied into ``models/versions/<its name>/`` when promoted).
The candidate and the version that serves now are scored side by side, as the
workers serve them (``NLU.annotate``), on every CSV of the check folder and on
the corrections given: accuracy of the intent or the sentiment, whichever the
file's labels are (sentiment when they are all negative / neutral / positive; a
file without a ``label`` column holds requests the bot should turn away, and
the right intent for each is ``out_of_scope``). A candidate less accurate than
the serving version on any check set by more than ``--tolerance`` is refused
(exit 1, nothing changes). The corrections are shown but decide nothing: the
candidate was trained on them. Otherwise ``current`` names the candidate and
``previous`` the version it replaces; running NLU workers switch between two
batches. ``--rollback`` points ``current`` back at ``previous``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .data import DataError, read_csv
from .inference import models_dir
from .versions import FLAT, VERSIONS, ModelVersion, VersionError, check_name, current, rollback, set_current, version

CHECK_DIR = Path(__file__).resolve().parent / "data" / "check"
SENTIMENT_LABELS = frozenset({"negative", "neutral", "positive"})
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class EvalSet:
    """Labelled texts to score a version on; ``gate``: the candidate may not be worse on them."""

    name: str
    task: str  # intent | sentiment
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    gate: bool


def task_of(labels: Sequence[str]) -> str:
    return "sentiment" if set(labels) <= SENTIMENT_LABELS else "intent"


def read_set(path: Path, gate: bool, name: str | None = None) -> EvalSet:
    """A check set or corrections file: ``text,label``, or ``text`` alone for out-of-scope requests."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        columns = csv.DictReader(fh).fieldnames or []
    if "label" in columns:
        examples, _ = read_csv(path)
        texts, labels = [e.text for e in examples], [e.label for e in examples]
    elif "text" in columns:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            texts = [t for r in csv.DictReader(fh) if (t := (r.get("text") or "").strip())]
        labels = [OUT_OF_SCOPE] * len(texts)
    else:
        raise DataError(f"{path}: the header needs a 'text' column (and 'label', but for out-of-scope requests)")
    return EvalSet(name or path.name, task_of(labels), tuple(texts), tuple(labels), gate)


def check_sets(folder: Path) -> list[EvalSet]:
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DataError(f"no check sets (*.csv) in {folder}")
    return [read_set(f, gate=True) for f in files]


def database_corrections(url: str, since: date | None) -> list[EvalSet]:
    """The agents' corrections in the product's database, one set per task (none where there are none)."""
    from .feedback import TASKS, FeedbackError, corrections

    out = []
    for task in TASKS:
        try:
            rows = corrections(url, task, since)
        except FeedbackError as exc:
            print(f"note: corrections not read from the database: {exc}", file=sys.stderr)
            return out
        if rows:
            texts, labels = zip(*rows, strict=True)
            out.append(EvalSet(f"corrections in the database ({task})", task, texts, labels, gate=False))
    return out


def accuracies(v: ModelVersion, sets: list[EvalSet], device: str | None, int8: bool) -> dict[str, float]:
    """Accuracy of version ``v`` on each set, as a worker serves it."""
    from .inference import NLU
    from .metrics import classification_report

    nlu = NLU.load(v.intent_dir, v.sentiment_dir, device=device, int8=int8)
    texts = list(dict.fromkeys(t for s in sets for t in s.texts))
    read = dict(zip(texts, nlu.annotate(texts), strict=True))
    out = {}
    for s in sets:
        pred = [read[t].intent if s.task == "intent" else read[t].sentiment for t in s.texts]
        out[s.name] = float(classification_report(list(s.labels), pred, sorted({*s.labels, *pred}))["accuracy"])
    del nlu, read
    gc.collect()
    return out


def verdicts(
    sets: list[EvalSet], serving: dict[str, float], candidate: dict[str, float], tolerance: float
) -> list[str]:
    """Why the candidate is refused: one line per check set it is worse on beyond the tolerance."""
    return [
        f"{s.name}: {candidate[s.name]:.3f} against {serving[s.name]:.3f}, {serving[s.name] - candidate[s.name]:.3f}"
        f" worse (tolerance {tolerance:.3f})"
        for s in sets
        if s.gate and round(serving[s.name] - candidate[s.name], 9) > tolerance
    ]


def table(sets: list[EvalSet], names: tuple[str, str], serving: dict[str, float], candidate: dict[str, float]) -> str:
    head = ("set", "task", "rows", *names, "change", "")
    rows = [
        (
            s.name,
            s.task,
            str(len(s.texts)),
            f"{serving[s.name]:.3f}",
            f"{candidate[s.name]:.3f}",
            f"{candidate[s.name] - serving[s.name]:+.3f}",
            "" if s.gate else "(shown, not a gate)",
        )
        for s in sets
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 4, 5}
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [head, *rows]
    )


def resolve(models: Path, candidate: str) -> tuple[ModelVersion, Path | None]:
    """The candidate version, and the folder to copy into ``models/versions/`` when it lives elsewhere."""
    is_name = "/" not in candidate and os.sep not in candidate
    if candidate == FLAT or (is_name and (models / VERSIONS / candidate).is_dir()):
        return version(models, candidate), None
    folder = Path(candidate)
    if not folder.is_dir():
        raise VersionError(
            f"no version {candidate!r}: not in {models / VERSIONS} and not a folder"
            " (python -m nlu.build_default --feedback FILE makes one)"
        )
    folder = folder.resolve()
    if folder == models.resolve():
        return version(models, FLAT), None
    if folder.parent == (models / VERSIONS).resolve():
        return version(models, folder.name), None
    name = check_name(folder.name)
    if (models / VERSIONS / name).exists():
        raise VersionError(f"{models / VERSIONS / name} exists already: rename {folder} to promote it")
    return ModelVersion(name, folder), folder


def file_in(models: Path, folder: Path, name: str) -> None:
    """Copy a candidate from elsewhere into ``models/versions/<name>``; it takes its name only when whole."""
    target = models / VERSIONS / name
    partial = target.with_name(f".{name}.copying")
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(folder, partial)
    partial.rename(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nlu.promote",
        description="Make a candidate model version current if it is no worse on the check sets; or roll back.",
    )
    ap.add_argument("candidate", nargs="?", help="a version in MODELS/versions/, 'flat', or a folder")
    ap.add_argument("--models", type=Path, default=None, help="the models folder (default: models/, or NLU_MODELS_DIR)")
    ap.add_argument("--rollback", action="store_true", help="make the previous version current again")
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how much less accurate than the serving version the candidate may be on a check set (default 0.01)",
    )
    ap.add_argument("--check-dir", type=Path, default=CHECK_DIR, help="the frozen check sets (default nlu/data/check)")
    ap.add_argument(
        "--corrections", type=Path, action="append", default=[], metavar="FILE", help="corrections CSV to show"
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get("SHOPBOT_DATABASE_URL"),
        help="show the corrections in this database too (default: SHOPBOT_DATABASE_URL)",
    )
    ap.add_argument("--since", type=date.fromisoformat, help="only corrections made on or after this day (UTC)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--int8", action="store_true", help="score with int8 weights on CPU (as SHOPBOT_NLU_INT8 serves)")
    ap.add_argument("--dry-run", action="store_true", help="compare only; change nothing")
    args = ap.parse_args(argv)
    models = args.models or models_dir()
    if args.rollback == bool(args.candidate):
        ap.error("give a CANDIDATE to promote, or --rollback")
    if not 0 <= args.tolerance <= 1:
        ap.error("--tolerance is a share of accuracy, from 0 to 1")
    try:
        if args.rollback:
            was, now = rollback(models)
            print(f"rolled back: {now} is current again (it was {was}; --rollback again undoes this)")
            return 0
        cand, elsewhere = resolve(models, args.candidate)
        if cand.missing():
            raise VersionError(f"{cand.path} has no {' and no '.join(cand.missing())} model")
        serving = current(models)
        if serving.name == cand.name and elsewhere is None:
            print(f"{cand.name} is current already")
            return 0
        sets = check_sets(args.check_dir)
        sets += [read_set(f, gate=False, name=f"corrections: {f.name}") for f in args.corrections]
        if args.database_url:
            sets += database_corrections(args.database_url, args.since)
        sets = [s for s in sets if s.texts]
        if serving.missing():
            print(f"note: {serving.name} (current) has no models in {serving.path}: nothing to compare against")
            refused: list[str] = []
        else:
            now = accuracies(serving, sets, args.device, args.int8)
            new = accuracies(cand, sets, args.device, args.int8)
            print(f"accuracy: {serving.name} (serving) against {cand.name} (candidate)")
            print(table(sets, (serving.name, cand.name), now, new))
            refused = verdicts(sets, now, new, args.tolerance)
    except (ValueError, OSError) as exc:  # DataError, ModelDirError, VersionError: each says what to do
        print(f"nlu.promote: error: {exc}", file=sys.stderr)
        return 2
    if refused:
        print(f"refused: {cand.name} is worse than {serving.name} on", file=sys.stderr)
        for line in refused:
            print(f"  {line}", file=sys.stderr)
        print(f"{serving.name} stays current.", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"dry run: {cand.name} would be promoted; nothing changed")
        return 0
    try:
        if elsewhere is not None:
            file_in(models, elsewhere, cand.name)
        was = set_current(models, cand.name)
    except (OSError, VersionError) as exc:
        print(f"nlu.promote: error: {exc}", file=sys.stderr)
        return 2
    print(f"promoted: {cand.name} is current (it was {was}); NLU workers switch within SHOPBOT_MODELS_CHECK_S")
    print(f"undo with: python -m nlu.promote --rollback --models {models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
