"""The lexical model (hashed TF-IDF + logistic regression) on real samples of the training data."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from nlu.lexical import LEXICAL_FILE, LexicalModel, blend

from .conftest import sample_csv


def rows(path):
    with path.open(encoding="utf-8") as fh:
        return [(r["text"], r["label"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def sentiment_rows(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("lexical")
    en = rows(sample_csv(data_dir / "sentiment-support-tweets-en.csv", tmp / "en.csv", 120))
    zh = rows(sample_csv(data_dir / "sentiment-shopping-reviews-zh.csv", tmp / "zh.csv", 200))
    return en, zh


def test_fit_save_load_gives_the_same_probabilities_in_label_order(sentiment_rows, tmp_path):
    en, zh = sentiment_rows
    train, held = (en + zh)[::2], (en + zh)[1::2]
    names = ["positive", "neutral", "negative"]  # not sorted: the class order must follow it
    model = LexicalModel.fit([t for t, _ in train], [y for _, y in train], names, seed=1)
    texts = [t for t, _ in held]
    lp = model.log_proba(texts)
    assert lp.shape == (len(texts), 3)
    assert torch.allclose(lp.exp().sum(1), torch.ones(len(texts)), atol=1e-5)
    # Far above the majority class on the held-out half: the classes are where the labels say.
    acc = np.mean([p == y for p, (_, y) in zip(model.predict(texts), held, strict=True)])
    majority = max(np.mean([y == c for _, y in held]) for c in names)
    assert acc > majority + 0.1, (acc, majority)
    model.save(tmp_path)
    again = LexicalModel.load(tmp_path)
    assert again.labels == names
    assert torch.allclose(again.log_proba(texts), lp, atol=1e-6)
    assert model.log_proba([]).shape == (0, 3)


def test_two_labels_give_the_logistic_regressions_own_probabilities(sentiment_rows):
    from sklearn.linear_model import LogisticRegression

    _, zh = sentiment_rows
    texts, labels = [t for t, _ in zh], [y for _, y in zh]
    model = LexicalModel.fit(texts, labels, ["negative", "positive"], seed=0)
    x = model._features(texts)
    y = np.array([["negative", "positive"].index(label) for label in labels])
    reference = LogisticRegression(C=10.0, max_iter=2000, random_state=0).fit(x, y).predict_proba(x)
    assert np.allclose(model.log_proba(texts).exp().numpy(), reference, atol=1e-3)


def test_chinese_character_ngrams_and_english_typos_reach_the_features(sentiment_rows):
    en, zh = sentiment_rows
    model = LexicalModel.fit([t for t, _ in en + zh], [y for _, y in en + zh], ["negative", "neutral", "positive"])
    x = model._features(["质量很好", "the flight was delayed", "teh flihgt was delayde"])
    assert all(x[i].nnz > 0 for i in range(3))
    # The misspelt message still shares character n-grams with the clean one.
    assert (x[1].multiply(x[2])).sum() > 0.3


def test_errors_are_clear(sentiment_rows, tmp_path):
    en, _ = sentiment_rows
    with pytest.raises(ValueError, match="no training text for label"):
        LexicalModel.fit([t for t, _ in en], [y for _, y in en], ["negative", "neutral", "positive", "furious"])
    model = LexicalModel.fit([t for t, _ in en], [y for _, y in en], ["negative", "neutral", "positive"])
    model.save(tmp_path)
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(tmp_path / LEXICAL_FILE))
    save_file(arrays, str(tmp_path / LEXICAL_FILE), metadata={"labels": '["a"]', "analyzers": '[["word", 1, 3]]'})
    with pytest.raises(ValueError, match="other n-grams"):
        LexicalModel.load(tmp_path)


def test_blend_is_a_weighted_geometric_mean():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = torch.tensor([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    assert torch.allclose(blend(p, q.log(), 0.0), p, atol=1e-6)
    half = (p * q).sqrt()
    assert torch.allclose(blend(p, q.log(), 0.5), half / half.sum(1, keepdim=True), atol=1e-6)
    # A confident transformer keeps its answer against a lukewarm lexical model at 0.3.
    assert blend(p, q.log(), 0.3).argmax(1).tolist() == [0, 2]
