"""The text classifier: a pretrained encoder, mean pooling, a linear head.

The encoder is split in two. The *trunk* (embeddings and the bottom
``freeze_layers`` layers) stays as pretrained; the *top* layers and the head are
fine-tuned. Two models fine-tuned from the same base with the same frozen trunk
share it bit for bit (``trunk_fingerprint``); two models trained jointly share
every layer. The inference runtime computes the shared part once for intent and
sentiment together (``shared_depth``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .base_models import load_tokenizer
from .language import LANGUAGES
from .lexical import LEXICAL_FILE, LexicalModel, blend

FORMAT_VERSION = 1
META_FILE = "nlu_model.json"
LABELS_FILE = "labels.json"
HEAD_FILE = "head.safetensors"


class ModelDirError(ValueError):
    """A model directory is missing or incomplete."""


@dataclass(frozen=True)
class ModelMeta:
    task: str
    base_model: str
    freeze_layers: int
    max_length: int
    text_prefix: str
    trunk_fingerprint: str
    # How a text longer than max_length is cut (see encode); models written
    # before this field existed kept the head.
    truncation: str = "head"
    # Share of the lexical model in the served probabilities (nlu.lexical);
    # 0: the transformer alone, as every model written before this field.
    lexical_weight: float = 0.0
    # Logits are divided by this before the softmax (temperature scaling, fitted
    # on held-out rows after training: see nlu.calibration); 1 for models written
    # before calibration existed.
    temperature: float = 1.0
    # Per language (nlu.language), log-prior offsets added to some labels after
    # the blend (nlu.calibration.fit_label_offsets): {"zh": {"neutral": 1.2}}.
    # Empty for models without partly labelled sources and models written before.
    label_offsets: dict[str, dict[str, float]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


TRUNCATIONS = ("head", "head_tail")


def encode(tokenizer, texts: list[str], max_length: int, truncation: str = "head") -> list[list[int]]:
    """Token ids per text, special tokens included, at most ``max_length`` each.

    ``head`` keeps the beginning of a longer text. ``head_tail`` keeps its first
    quarter and last three quarters of the budget: a long review tends to state
    its verdict at the start and sum it up at the end, and the middle (a story
    of the delivery, a list of features) says least (Sun et al. 2019, "How to
    fine-tune BERT for text classification", found head + tail best on long
    reviews). A tenth of the Chinese reviews run past 96 tokens.
    """
    if truncation == "head":
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    if truncation != "head_tail":
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    head = max_length // 4
    tail = max_length - head
    out = []
    for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]:
        out.append(ids if len(ids) <= max_length else ids[:head] + ids[len(ids) - tail :])
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, freeze_layers: int, dropout: float = 0.1):
        super().__init__()
        if not (hasattr(encoder, "embeddings") and hasattr(encoder, "encoder") and hasattr(encoder.encoder, "layer")):
            raise ModelDirError(
                f"{type(encoder).__name__} is not a BERT-family encoder (embeddings + encoder.layer);"
                " use a BERT, RoBERTa, XLM-R, MiniLM or E5 base model"
            )
        n_layers = len(encoder.encoder.layer)
        if not 0 <= freeze_layers <= n_layers:
            raise ValueError(f"freeze_layers must be between 0 and {n_layers}, got {freeze_layers}")
        self.encoder = encoder
        self.freeze_layers = freeze_layers
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        encoder.embeddings.requires_grad_(False)
        for layer in encoder.encoder.layer[:freeze_layers]:
            layer.requires_grad_(False)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler.requires_grad_(False)

    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Hidden states after the bottom ``depth`` layers (default: the frozen part,
        identical for models that share it)."""
        depth = self.freeze_layers if depth is None else depth
        hidden = self.encoder.embeddings(input_ids=input_ids)
        if depth:
            mask = self._mask(hidden, attention_mask)
            for layer in self.encoder.encoder.layer[:depth]:
                hidden = layer(hidden, mask)
        return hidden

    def top(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Logits from the hidden states after ``start`` layers (default: after the trunk)."""
        layers = self.encoder.encoder.layer[self.freeze_layers if start is None else start :]
        if len(layers):
            mask = self._mask(hidden, attention_mask)
            for layer in layers:
                hidden = layer(hidden, mask)
        return self.head(self.dropout(mean_pool(hidden, attention_mask)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(input_ids, attention_mask), attention_mask)

    def trunk_fingerprint(self) -> str:
        digest = hashlib.sha256()
        trunk = [self.encoder.embeddings, *self.encoder.encoder.layer[: self.freeze_layers]]
        for module in trunk:
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def shared_depth(a: TextClassifier, b: TextClassifier) -> int | None:
    """How many bottom encoder layers two models hold bit for bit: the frozen trunk
    of models fine-tuned apart, every layer of models trained jointly
    (``nlu.train --task joint``). None when not even the embeddings match."""

    def same(m: nn.Module, n: nn.Module) -> bool:
        x, y = m.state_dict(), n.state_dict()
        return x.keys() == y.keys() and all(
            x[k].shape == y[k].shape and x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]) for k in x
        )

    if not same(a.encoder.embeddings, b.encoder.embeddings):
        return None
    depth = 0
    for la, lb in zip(a.encoder.encoder.layer, b.encoder.encoder.layer, strict=False):
        if la is not lb and not same(la, lb):
            break
        depth += 1
    return depth


@dataclass
class LoadedModel:
    model: TextClassifier
    tokenizer: object
    labels: list[str]
    meta: ModelMeta
    path: Path
    device: torch.device
    lexical: LexicalModel | None = None

    def batches(
        self, texts: list[str], batch_size: int, max_length: int | None = None
    ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """``(indices, input_ids, attention_mask)`` per sub-batch, on the model's device.

        The texts are tokenized once and grouped by token count, so a sub-batch
        pads to about its own length: in a mix of English and Chinese, character
        counts say little about token counts, and sorting by tokens made the
        default models a third faster on batches of 128 (docs/nlu-figures.md,
        "Figures of the default models"). ``max_length`` defaults to the model's own.
        """
        from .data import normalize_text

        ids = encode(
            self.tokenizer,
            [self.meta.text_prefix + normalize_text(t) for t in texts],
            max_length or self.meta.max_length,
            self.meta.truncation,
        )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                span = slice(width - len(ids[i]), width) if left else slice(0, len(ids[i]))
                input_ids[row, span] = torch.tensor(ids[i], dtype=torch.long)
                mask[row, span] = 1
            yield idx, input_ids.to(self.device), mask.to(self.device)

    @torch.inference_mode()
    def logits(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """The encoder's raw logits, one row per text (in input order), before
        temperature and blend."""
        self.model.eval()
        out = torch.empty(len(texts), len(self.labels))
        for idx, ids, mask in self.batches(texts, batch_size):
            with _autocast(self.device):
                out[idx] = self.model(ids, mask).float().cpu()
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities as served, one row per text (in input order)."""
        return self.probs_from_logits(self.logits(texts, batch_size), texts)

    def probs_from_logits(self, logits: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Calibrated encoder probabilities, blended with the lexical model's when it
        has one, with the label priors of each text's language shifted when it has offsets."""
        return self.shift(self.blend(torch.softmax(logits.float() / self.meta.temperature, dim=-1), texts), texts)

    def shift(self, probs: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """``probs`` with the model's per-language label offsets applied (``meta.label_offsets``)."""
        if not self.meta.label_offsets or not texts:
            return probs
        from .language import detect_language

        vectors = {lang: offset_vector(self.labels, by_label) for lang, by_label in self.meta.label_offsets.items()}
        out = probs.clone()
        for row, text in enumerate(texts):
            vec = vectors.get(detect_language(text))
            if vec is not None:
                p = probs[row] * vec.exp()
                out[row] = p / p.sum()
        return out

    def blend(self, probs: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """The transformer's probabilities for ``texts`` mixed with the lexical
        model's, when the model has one (``meta.lexical_weight``)."""
        if self.lexical is None or not self.meta.lexical_weight or not texts:
            return probs
        return blend(probs, self.lexical.log_proba(texts), self.meta.lexical_weight)


def offset_vector(labels: list[str], by_label: dict[str, float]) -> torch.Tensor:
    """One language's label offsets as a vector in ``labels`` order (0 where not given)."""
    return torch.tensor([float(by_label.get(label, 0.0)) for label in labels])


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    import contextlib

    return contextlib.nullcontext()


def quantize_int8(model: TextClassifier) -> TextClassifier:
    """Swap the encoder's ``nn.Linear`` layers for dynamically quantized int8 ones, in place.

    For CPU inference: weights are stored as int8 with one scale per output
    channel (per-tensor scales lost twice as much accuracy), activations are
    quantized on the fly; the classification head stays fp32. On the 2-core CPU
    the default models run about 1.7-2.2x faster, for about a point less
    sentiment accuracy (docs/nlu-figures.md, "Serving in int8"), which is why it is an
    option, not the default. Layers shared with
    another model are swapped for both.
    """
    import warnings

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not
        # installed here; the eager-mode dynamic path is still shipped and tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules() if type(m) is nn.Linear}
        spec.pop("head", None)
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_model(
    out: Path,
    model: TextClassifier,
    tokenizer,
    labels: list[str],
    meta: ModelMeta,
    lexical: LexicalModel | None = None,
) -> None:
    from safetensors.torch import save_file

    if bool(meta.lexical_weight) != (lexical is not None):
        raise ValueError("a lexical model is saved exactly when meta.lexical_weight is above 0")
    out.mkdir(parents=True, exist_ok=True)
    if lexical is not None:
        lexical.save(out)
    model.encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(out / HEAD_FILE))
    (out / LABELS_FILE).write_text(json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / META_FILE).write_text(json.dumps(asdict(meta), indent=2), encoding="utf-8")


def load_model(path: str | Path, device: str | torch.device | None = None, int8: bool = False) -> LoadedModel:
    """Load a model directory written by ``nlu.train``; fp16 on CUDA, int8 weights on CPU if ``int8``."""
    from safetensors.torch import load_file
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    p = Path(path)
    missing = [f for f in (META_FILE, LABELS_FILE, HEAD_FILE, "config.json") if not (p / f).is_file()]
    if not p.is_dir() or missing:
        raise ModelDirError(
            f"{p} is not a model directory from nlu.train"
            + (f" (missing {', '.join(missing)})" if p.is_dir() else " (no such directory)")
        )
    meta_raw = json.loads((p / META_FILE).read_text())
    if meta_raw.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{p}: model format {meta_raw.get('format_version')} is not supported; retrain it")
    meta = ModelMeta(**meta_raw)
    labels = json.loads((p / LABELS_FILE).read_text(encoding="utf-8"))
    # The meta's own values first: a broken directory says so before the encoder loads.
    if not meta.temperature > 0:
        raise ModelDirError(f"{p}: temperature in {META_FILE} must be above 0, got {meta.temperature}")
    if not 0 <= meta.lexical_weight < 1:
        raise ModelDirError(f"{p}: lexical_weight in {META_FILE} must be from 0 up to 1, got {meta.lexical_weight}")
    for lang, by_label in meta.label_offsets.items():
        bad = [k for k, v in by_label.items() if k not in labels or not isinstance(v, int | float) or abs(v) > 10]
        if lang not in LANGUAGES or bad:
            raise ModelDirError(
                f"{p}: label_offsets in {META_FILE} take a language ({', '.join(LANGUAGES)}) and offsets"
                f" of at most 10 for its labels; got {lang!r}: {by_label}"
            )
    lexical = None
    if meta.lexical_weight:
        try:
            lexical = LexicalModel.load(p)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelDirError(
                f"{p}: the model blends in a lexical model ({LEXICAL_FILE}) that cannot be read: {exc}"
            ) from exc
        if lexical.labels != labels:
            raise ModelDirError(f"{p}: {LEXICAL_FILE} has other labels than {LABELS_FILE}")
    dev = torch.device(device) if device else pick_device()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the encoder has no pooler weights by design
    try:
        encoder = AutoModel.from_pretrained(p, add_pooling_layer=False)
        tokenizer = load_tokenizer(p)  # one per process for the models that share it
    finally:
        hf_logging.set_verbosity(verbosity)
    model = TextClassifier(encoder, len(labels), meta.freeze_layers)
    model.head.load_state_dict(load_file(str(p / HEAD_FILE)))
    model.eval().to(dev)
    if dev.type == "cuda":
        model.half()
    elif int8:
        quantize_int8(model)
    return LoadedModel(model, tokenizer, labels, meta, p, dev, lexical)
