"""The classical baseline: TF-IDF word n-grams + logistic regression, on the same documents as the transformer.

If this baseline comes close to the transformer, the transformer has probably learned surface artefacts
(vocabulary, formatting) rather than writing style; the reports put the two side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

BASELINE_NAME = "tfidf_logreg"


def build_baseline(seed: int = 0) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=200_000)),
            ("logreg", LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed)),
        ]
    )


def tfidf_baseline_probs(
    train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str], seed: int = 0
) -> np.ndarray:
    """P(machine) for each evaluation text from a baseline fitted on the training texts (same order as given)."""
    labels = np.asarray(train_labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError("the baseline needs human and machine training documents")
    model = build_baseline(seed).fit(list(train_texts), labels)
    logger.info("TF-IDF baseline fitted on %d documents (%d features)", len(labels), len(model[0].vocabulary_))
    return model.predict_proba(list(eval_texts))[:, list(model.classes_).index(1)]
