"""The NLU runtime the workers use: load both models once, annotate batches.

    nlu = NLU.load("models/intent", "models/sentiment")  # or NLU.load(): the current version
    nlu.annotate(["where is my order?", "我的快递到哪了"])

The bottom layers the two models share bit for bit (a frozen trunk, or the
whole encoder when they were trained jointly, as the default models are) run
once per batch for both and are held in memory once.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .language import detect_language
from .model import LoadedModel, _autocast, load_model, quantize_int8, shared_depth

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def models_dir() -> Path:
    return Path(os.environ.get("NLU_MODELS_DIR", DEFAULT_MODELS_DIR))


@dataclass(frozen=True)
class Annotation:
    language: str  # zh | en | other
    intent: str
    intent_confidence: float
    intent_top_k: tuple[tuple[str, float], ...]
    sentiment: str  # negative | neutral | positive
    sentiment_score: float  # P(positive) - P(negative), in [-1, 1]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["intent_top_k"] = [list(p) for p in self.intent_top_k]
        return d


class NLU:
    def __init__(
        self,
        intent: LoadedModel,
        sentiment: LoadedModel,
        top_k: int = 3,
        batch_size: int | None = None,
        int8: bool = False,
    ):
        if intent.meta.task != "intent" or sentiment.meta.task != "sentiment":
            raise ValueError(
                f"expected an intent and a sentiment model, got {intent.meta.task!r} and {sentiment.meta.task!r}"
            )
        self.intent = intent
        self.sentiment = sentiment
        self.top_k = top_k
        self.device = intent.device
        # Texts run in length-sorted sub-batches: on the 2-core CPU 16 beat 8, 32
        # and 64 (less padding, same efficiency); a GPU wants big batches.
        self.batch_size = batch_size or (128 if self.device.type == "cuda" else 16)
        # The bottom layers both models hold bit for bit run once per batch and
        # are kept in memory once: the frozen trunk of models fine-tuned apart,
        # the whole encoder of models trained jointly.
        depth = None
        same_input = (
            intent.meta.text_prefix == sentiment.meta.text_prefix
            and intent.meta.truncation == sentiment.meta.truncation
            and len(intent.tokenizer) == len(sentiment.tokenizer)
        )
        if same_input:
            depth = shared_depth(intent.model, sentiment.model)
        self.shared_depth = depth
        self.shared_trunk = depth is not None
        if depth is not None:
            s_enc, i_enc = sentiment.model.encoder, intent.model.encoder
            s_enc.embeddings = i_enc.embeddings
            for i in range(depth):
                s_enc.encoder.layer[i] = i_enc.encoder.layer[i]
        # int8 weights on CPU (see nlu.model.quantize_int8); after the sharing
        # above, so the shared trunk is quantized once.
        self.int8 = int8 and self.device.type == "cpu"
        if self.int8:
            for m in (intent, sentiment):
                quantize_int8(m.model)
        labels = sentiment.labels
        self._pos = labels.index("positive") if "positive" in labels else None
        self._neg = labels.index("negative") if "negative" in labels else None

    @classmethod
    def load(
        cls,
        intent_dir: str | Path | None = None,
        sentiment_dir: str | Path | None = None,
        device: str | None = None,
        int8: bool = False,
        **kw: int,
    ) -> NLU:
        """Both models (by default the current version of ``models_dir()``, see ``nlu.versions``);
        ``int8`` quantizes their linear layers when running on CPU."""
        if intent_dir is None or sentiment_dir is None:
            from .versions import current

            served = current(models_dir())
            intent_dir, sentiment_dir = intent_dir or served.intent_dir, sentiment_dir or served.sentiment_dir
        intent = load_model(intent_dir, device)
        sentiment = load_model(sentiment_dir, device)
        return cls(intent, sentiment, int8=int8, **kw)

    @torch.inference_mode()
    def _probs(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.shared_trunk:
            return self.intent.predict_proba(texts, self.batch_size), self.sentiment.predict_proba(
                texts, self.batch_size
            )
        i_model, s_model = self.intent.model, self.sentiment.model
        max_len = max(self.intent.meta.max_length, self.sentiment.meta.max_length)
        # Raw logits first; temperature and lexical blend as each model serves them.
        p_int = torch.empty(len(texts), len(self.intent.labels))
        p_sen = torch.empty(len(texts), len(self.sentiment.labels))
        for idx, ids, mask in self.intent.batches(texts, self.batch_size, max_len):
            with _autocast(self.device):
                hidden = i_model.trunk(ids, mask, self.shared_depth)
                li = i_model.top(hidden, mask, self.shared_depth)
                ls = s_model.top(hidden, mask, self.shared_depth)
            p_int[idx] = li.float().cpu()
            p_sen[idx] = ls.float().cpu()
        return self.intent.probs_from_logits(p_int, texts), self.sentiment.probs_from_logits(p_sen, texts)

    def annotate(self, texts: list[str]) -> list[Annotation]:
        """Language, intent (+confidence, top-k) and sentiment (+score) per text."""
        if not texts:
            return []
        p_int, p_sen = self._probs(list(texts))
        k = min(self.top_k, p_int.shape[1])
        top_p, top_i = p_int.topk(k, dim=1)
        out = []
        for row, text in enumerate(texts):
            top = tuple(
                (self.intent.labels[j], round(float(p), 4)) for p, j in zip(top_p[row], top_i[row], strict=True)
            )
            ps = p_sen[row]
            pos = float(ps[self._pos]) if self._pos is not None else 0.0
            neg = float(ps[self._neg]) if self._neg is not None else 0.0
            out.append(
                Annotation(
                    language=detect_language(text),
                    intent=top[0][0],
                    intent_confidence=top[0][1],
                    intent_top_k=top,
                    sentiment=self.sentiment.labels[int(ps.argmax())],
                    sentiment_score=round(pos - neg, 4),
                )
            )
        return out
