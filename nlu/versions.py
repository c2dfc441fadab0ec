"""Model versions in a models folder, and which one serves.

    models/
      intent/, sentiment/     the flat layout from before versions: the version called "flat"
      versions/<version>/     one version: intent/, sentiment/, version.json (how it was made)
      current                 one line: the version the NLU workers serve (no file: "flat")
      previous                one line: the version ``current`` named before the last change

``nlu.build_default --feedback`` writes a new version and leaves ``current``
alone; ``nlu.promote`` evaluates it and rewrites ``current`` (and ``previous``,
for ``--rollback``). Both pointer files are replaced whole by a rename, so a
reader sees the old name or the new one, never half a write. A running NLU
worker reads ``current`` every ``SHOPBOT_MODELS_CHECK_S`` seconds and switches
to the version it names (workers/tasks.py: ``switch_models``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

FLAT = "flat"
VERSIONS = "versions"
CURRENT = "current"
PREVIOUS = "previous"
VERSION_INFO = "version.json"
TASKS = ("intent", "sentiment")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class VersionError(ValueError):
    """A version name or folder is unusable; the message says why and what to do."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path  # the folder holding intent/ and sentiment/

    @property
    def intent_dir(self) -> Path:
        return self.path / "intent"

    @property
    def sentiment_dir(self) -> Path:
        return self.path / "sentiment"

    def missing(self) -> list[str]:
        """The model folders this version lacks (empty when both are there)."""
        return [t for t in TASKS if not (self.path / t / "nlu_model.json").is_file()]

    def info(self) -> dict[str, object]:
        """Its ``version.json`` (how it was made), or {} for one without (the flat models)."""
        try:
            return json.loads((self.path / VERSION_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in (FLAT, VERSIONS, CURRENT, PREVIOUS, *TASKS):
        raise VersionError(
            f"{name!r} cannot name a version: use 1-64 letters, digits, '.', '_' or '-' (not starting with"
            f" '.', '_' or '-'), and none of {FLAT}, {VERSIONS}, {CURRENT}, {PREVIOUS}, {', '.join(TASKS)}"
        )
    return name


def new_name(now: datetime | None = None) -> str:
    """A name for a version made now: its UTC time, ``20261104-153012``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def version(models: Path, name: str) -> ModelVersion:
    """The version ``name`` of the models folder (which may not exist: see ``missing``)."""
    if name == FLAT:
        return ModelVersion(FLAT, models)
    return ModelVersion(check_name(name), models / VERSIONS / name)


def _read_pointer(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def current_name(models: Path) -> str:
    """The name in ``current`` (``flat`` when there is none): cheap enough to call every few seconds."""
    return _read_pointer(models / CURRENT) or FLAT


def current(models: Path) -> ModelVersion:
    """The version that serves."""
    return version(models, current_name(models))


def in_folder(folder: Path) -> ModelVersion:
    """The models a folder stands for: the version its ``current`` names when it has one, else its own
    ``intent/`` and ``sentiment/`` (a flat models folder, or one version's folder)."""
    if (folder / CURRENT).is_file():
        return current(folder)
    return ModelVersion(folder.name if folder.parent.name == VERSIONS else FLAT, folder)


def previous(models: Path) -> ModelVersion | None:
    """The version ``current`` named before the last promotion or rollback, if any."""
    name = _read_pointer(models / PREVIOUS)
    return version(models, name) if name else None


def names(models: Path) -> list[str]:
    """The versions in the folder in name order (time names sort by time), ``flat`` first when it is there."""
    found = sorted(p.name for p in (models / VERSIONS).glob("*") if p.is_dir() and _NAME.fullmatch(p.name))
    return ([FLAT] if not version(models, FLAT).missing() else []) + found


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # readers see the old file or the new one


def set_current(models: Path, name: str) -> str:
    """Make ``name`` current, remembering the one it replaces in ``previous``; returns that one."""
    target = version(models, name)
    if target.missing():
        raise VersionError(f"version {name} has no {' and no '.join(target.missing())} model in {target.path}")
    before = current_name(models)
    _write_atomic(models / PREVIOUS, before + "\n")
    _write_atomic(models / CURRENT, name + "\n")
    return before


def rollback(models: Path) -> tuple[str, str]:
    """Point ``current`` back at ``previous`` (and ``previous`` at what was current): (from, to)."""
    back = previous(models)
    if back is None:
        raise VersionError(f"nothing to roll back to: {models / PREVIOUS} does not exist (no promotion yet)")
    if back.missing():
        raise VersionError(f"cannot roll back to {back.name}: it has no {' and no '.join(back.missing())} model")
    return set_current(models, back.name), back.name
