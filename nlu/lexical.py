"""The lexical model: TF-IDF of hashed word and character n-grams, logistic regression.

It is the baseline every transformer model is measured against, and it can
also serve beside a transformer model: ``nlu.train --lexical-weight W`` stores
it in the model directory, and the model's probabilities become the weighted
geometric mean of the two (``LoadedModel.predict_proba``). The two err on
different messages: the encoder reads meaning, the n-grams keep the exact words
and characters a fine-tuned encoder smooths over (docs/nlu-training.md, "Lexical blend").

Features are hashed rather than looked up in a vocabulary, so the model is a
few arrays (``lexical.safetensors``), with no pickled Python objects to trust,
and the same text always gives the same features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .data import normalize_text

LEXICAL_FILE = "lexical.safetensors"
# (analyzer, smallest n, largest n): word 1-2 grams, and character 1-4 grams
# within word boundaries, which carry Chinese (no spaces) and survive typos.
ANALYZERS: tuple[tuple[str, int, int], ...] = (("word", 1, 2), ("char_wb", 1, 4))
N_FEATURES = 2**19  # per analyzer; collisions cost nothing measurable at this size
MIN_DF = 2  # an n-gram seen in one training text only is dropped (weight 0)
MAX_CHAR_FEATURES = 200_000  # the most frequent character n-grams kept
C = 10.0  # inverse L2 strength of the logistic regression


def _vectorizers(n_features: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return [
        HashingVectorizer(
            analyzer=analyzer, ngram_range=(lo, hi), n_features=n_features, alternate_sign=False, norm=None
        )
        for analyzer, lo, hi in ANALYZERS
    ]


def _tfidf(counts, idf: np.ndarray):
    """Sublinear TF times IDF, each row scaled to unit length (as sklearn's TfidfTransformer)."""
    from sklearn.preprocessing import normalize

    x = counts.tocsr().astype(np.float32)
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf[np.newaxis, :]).tocsr()
    return normalize(x, copy=False)


class LexicalModel:
    def __init__(self, labels: list[str], idf: list[np.ndarray], coef: np.ndarray, intercept: np.ndarray):
        if len(idf) != len(ANALYZERS) or coef.shape != (len(labels), len(ANALYZERS) * len(idf[0])):
            raise ValueError("lexical model arrays do not match its labels and analyzers")
        self.labels = labels
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self._vecs = _vectorizers(len(idf[0]))

    def _features(self, texts: list[str]):
        from scipy.sparse import hstack

        clean = [normalize_text(t) for t in texts]
        return hstack([_tfidf(v.transform(clean), idf) for v, idf in zip(self._vecs, self.idf, strict=True)]).tocsr()

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], label_names: list[str], seed: int = 0) -> LexicalModel:
        """Fit on ``texts`` / ``labels``; class order follows ``label_names``."""
        from scipy.sparse import hstack
        from sklearn.linear_model import LogisticRegression

        missing = sorted(set(label_names) - set(labels))
        if missing:
            raise ValueError(f"no training text for label(s) {', '.join(missing)}")
        clean = [normalize_text(t) for t in texts]
        n = len(clean)
        idf, blocks = [], []
        for vec in _vectorizers(N_FEATURES):
            counts = vec.transform(clean).tocsr()
            df = np.bincount(counts.indices, minlength=N_FEATURES)
            block_idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)  # smoothed, as sklearn
            dropped = df < MIN_DF
            if vec.analyzer == "char_wb":
                total = np.bincount(counts.indices, weights=counts.data, minlength=N_FEATURES)
                dropped[np.argsort(-total, kind="stable")[MAX_CHAR_FEATURES:]] = True
            block_idf[dropped] = 0.0
            idf.append(block_idf)
            blocks.append(_tfidf(counts, block_idf))
        y = np.array([label_names.index(label) for label in labels])
        x = hstack(blocks).tocsr()
        # Fitted on the columns some text has: a column no text has keeps a zero weight at the optimum (only
        # the L2 term pulls on it), and L-BFGS over the millions of hashed columns is most of the time.
        used = np.flatnonzero(np.bincount(x.indices, minlength=x.shape[1]))
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x[:, used], y)
        coef = np.zeros((clf.coef_.shape[0], x.shape[1]), dtype=np.float32)
        coef[:, used] = clf.coef_
        intercept = clf.intercept_.astype(np.float32)
        if len(label_names) == 2:  # one score s for class 1; softmax([-s/2, s/2]) is sigmoid(s)
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
        return cls(list(label_names), idf, coef, intercept)

    def log_proba(self, texts: list[str]) -> torch.Tensor:
        """Log class probabilities, one row per text, classes in ``labels`` order."""
        if not texts:
            return torch.empty(0, len(self.labels))
        x = self._features(texts)
        logits = np.asarray(x @ self.coef.T) + self.intercept
        return torch.log_softmax(torch.from_numpy(logits.astype(np.float32)), dim=-1)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.log_proba(texts).argmax(1).tolist()]

    def save(self, out: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {f"idf_{i}": a for i, a in enumerate(self.idf)}
        tensors |= {"coef": self.coef, "intercept": self.intercept}
        # sklearn may hand back Fortran-ordered arrays; the file holds C order.
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        info = {"labels": json.dumps(self.labels, ensure_ascii=False), "analyzers": json.dumps(ANALYZERS)}
        save_file(tensors, str(Path(out) / LEXICAL_FILE), metadata=info)

    @classmethod
    def load(cls, model_dir: Path) -> LexicalModel:
        from safetensors import safe_open

        with safe_open(str(Path(model_dir) / LEXICAL_FILE), framework="np") as f:
            info = f.metadata() or {}
            if json.loads(info.get("analyzers", "null")) != [list(a) for a in ANALYZERS]:
                raise ValueError(f"{model_dir}: lexical model built with other n-grams; retrain it")
            idf = [f.get_tensor(f"idf_{i}") for i in range(len(ANALYZERS))]
            return cls(json.loads(info["labels"]), idf, f.get_tensor("coef"), f.get_tensor("intercept"))


def blend(probs: torch.Tensor, lexical_log_probs: torch.Tensor, weight: float) -> torch.Tensor:
    """Weighted geometric mean of two probability rows, renormalised."""
    log_p = (1.0 - weight) * torch.log(probs.float().clamp_min(1e-9)) + weight * lexical_log_probs
    return torch.softmax(log_p, dim=-1)
