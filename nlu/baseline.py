"""TF-IDF + linear model: the baseline every transformer model must beat."""

from __future__ import annotations

from .data import normalize_text


def train_baseline(texts: list[str], labels: list[str], seed: int = 0):
    """Word 1-2 grams plus character 1-4 grams (the latter carry Chinese, which
    has no spaces), logistic regression on top."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True, max_features=200_000),
    )
    pipe = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
    pipe.fit([normalize_text(t) for t in texts], labels)
    return pipe


def predict_baseline(pipe, texts: list[str]) -> list[str]:
    return list(pipe.predict([normalize_text(t) for t in texts]))
