"""How good a detector is: chunk and document metrics, the decision threshold, and the TF-IDF baseline beside it.

The baseline (word n-grams + logistic regression) is fitted on the same training documents: if it comes close to
the transformer, the transformer has probably learned surface artefacts rather than writing style.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline, make_pipeline
from transformers import EvalPrediction

from data_loaders import HUMAN_GENERATOR, LABEL_NAMES, M4_CORPUS, RAID_EXTRA_FIELDS, Corpus, Document
from m4_training.cli import counted

logger = logging.getLogger(__name__)

BASELINE_NAME = "tfidf_logreg"
TPR_FPRS = (0.05, 0.01)  # RAID's operating points: TPR at 5% and 1% FPR on human documents
BASELINE_COLUMN = "baseline_prob_machine"
# metrics["threshold"]["chosen_on"]: where the decision threshold came from.
THRESHOLD_CHOSEN_HERE = "these documents"
THRESHOLD_FROM_TRAINING = "the training run's validation documents"
THRESHOLD_GIVEN = "the command line (--threshold)"
# The fixed 0.5 of a model without training_config.json (predict.py).
DEFAULT_THRESHOLD_SOURCE = "no documents: 0.5, the default of a model without training_config.json"
# The fields of a line of a prediction file, in order; the first four are always there.
PREDICTION_FIELDS = (
    "id", "prob_machine", "pred", "n_chunks", "label", "domain", "generator", *RAID_EXTRA_FIELDS, BASELINE_COLUMN
)  # fmt: skip
# Score sanity (score_warnings): scores with fewer distinct values than this over at least QUANTISED_MIN_DOCUMENTS
# documents are quantised (a hard 0/1 detector, a rounded API score); on fewer documents few values may be chance.
MIN_DISTINCT_SCORES = 10
QUANTISED_MIN_DOCUMENTS = 100


def classification_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, macro-F1, precision/recall of the machine class, AUROC and the human false-positive rate."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    preds = (probs >= threshold).astype(np.int64)
    humans = labels == 0
    both_classes = 0 < humans.sum() < len(labels)
    ranked = both_classes and not np.isnan(probs).any()  # a NaN score has no rank (and counts as human above)
    return {
        "n": int(len(labels)),
        "n_human": int(humans.sum()),
        "n_machine": int((~humans).sum()),
        "accuracy": float(accuracy_score(labels, preds)) if len(labels) else None,
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)) if both_classes else None,
        "precision": float(precision_score(labels, preds, zero_division=0)) if both_classes else None,
        "recall": float(recall_score(labels, preds, zero_division=0)) if (~humans).any() else None,
        "auroc": float(roc_auc_score(labels, probs)) if ranked else None,
        "fpr_human": float(preds[humans].mean()) if humans.any() else None,
        **{f"tpr_at_fpr_{round(fpr * 100)}": tpr_at_fpr(labels, probs, fpr) if ranked else None for fpr in TPR_FPRS},
    }


def threshold_at_fpr(labels: np.ndarray, probs: np.ndarray, fpr: float) -> float:
    """The threshold of the best TPR that flags at most `fpr` of the human documents (RAID's operating point)."""
    fprs, tprs, thresholds = roc_curve(labels, probs)
    allowed = np.flatnonzero(fprs <= fpr)
    return float(thresholds[allowed[np.argmax(tprs[allowed])]])


def tpr_at_fpr(labels: np.ndarray, probs: np.ndarray, fpr: float) -> float:
    """The share of machine documents caught at the best threshold that flags at most `fpr` of the human ones, as
    RAID reports detectors (whatever threshold a run chose)."""
    machines = np.asarray(probs)[np.asarray(labels) == 1]
    return float((machines >= threshold_at_fpr(labels, probs, fpr)).mean())


def compute_chunk_metrics(eval_prediction: EvalPrediction) -> dict[str, Any]:
    """`Trainer.compute_metrics`: chunk-level metrics (predictions and labels arrive in the same order)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    probs = softmax(np.asarray(logits, dtype=np.float64), axis=-1)[:, 1]
    metrics = classification_metrics(eval_prediction.label_ids, probs)
    return {k: v for k, v in metrics.items() if v is not None and not k.startswith("n")}


def aggregate_documents(
    chunk_doc_ids: np.ndarray, chunk_probs: np.ndarray, documents: pd.DataFrame, how: str = "mean"
) -> pd.DataFrame:
    """One row per document: its metadata, n_chunks and prob_machine aggregated over its chunks by doc_id."""
    per_chunk = pd.DataFrame({"doc_id": np.asarray(chunk_doc_ids), "prob_machine": np.asarray(chunk_probs)})
    grouped = per_chunk.groupby("doc_id")["prob_machine"].agg(prob_machine=how, n_chunks="size")
    result = documents.merge(grouped, left_on="doc_id", right_index=True, how="left", validate="one_to_one")
    if result["prob_machine"].isna().any():
        missing = result.loc[result["prob_machine"].isna(), "doc_id"].tolist()[:5]
        raise ValueError(f"no chunk prediction for documents {missing}")
    result["n_chunks"] = result["n_chunks"].astype(int)
    return result


def document_metrics(predictions: pd.DataFrame, threshold: float = 0.5) -> dict[str, Any]:
    """Overall document metrics and the same per domain, generator, source corpus and RAID decoding and attack where
    the input has them. A generator's (decoding's) group holds its machine documents with all human ones (so AUROC
    and F1 exist), after the human documents alone (`human`); an attack's holds its human and machine texts."""
    metrics = classification_metrics(predictions["label"], predictions["prob_machine"], threshold)
    metrics["threshold"] = threshold
    humans = predictions[predictions["label"] == 0]
    optional = [column for column in ("corpus", "decoding", "attack") if column in predictions.columns]
    for column in ("domain", "generator", *optional):  # domain and generator are always there (fill_groups)
        if column in ("generator", "decoding"):
            groups = predictions[predictions["label"] == 1].groupby(column, sort=True)
            groups = [(HUMAN_GENERATOR, humans), *((value, pd.concat([humans, part])) for value, part in groups)]
        else:
            groups = predictions.groupby(column, sort=True)
        metrics[f"by_{column}"] = {
            str(value): classification_metrics(part["label"], part["prob_machine"], threshold) for value, part in groups
        }
    return metrics


def score_warnings(probs: np.ndarray, labels: np.ndarray | None = None) -> list[str]:
    """What looks broken in a detector's scores, one sentence each: NaN scores, one constant score, scores
    quantised to few values (see MIN_DISTINCT_SCORES), and scores that point the wrong way (AUROC < 0.5 on
    `labels`, 0/1 for every document; None: unlabelled). RAID's maintainers met each in leaderboard entries."""
    probs = np.asarray(probs, dtype=np.float64)
    nan = np.isnan(probs)
    warnings = []
    if nan.any():
        warnings.append(
            f"{counted(int(nan.sum()), 'document')} of {len(probs)} scored NaN: counted as human at every "
            "threshold, and AUROC and TPR@FPR are not computed"
        )
    distinct = len(np.unique(probs[~nan]))
    if distinct == 1 and (~nan).sum() > 1:
        warnings.append(
            f"constant scores: every document scored {probs[~nan][0]:.6g}; the detector tells no text from another"
        )
    elif distinct < MIN_DISTINCT_SCORES and (~nan).sum() >= QUANTISED_MIN_DOCUMENTS:
        warnings.append(
            f"quantised scores: {distinct} distinct values over {int((~nan).sum())} documents; ties make AUROC and "
            "TPR@FPR coarse and thresholds jump"
        )
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)[~nan]
        if 0 < labels.sum() < len(labels) and (auroc := roc_auc_score(labels, probs[~nan])) < 0.5:
            warnings.append(
                f"AUROC {auroc:.3f} < 0.5: the scores point the wrong way; the labels may be inverted (is the "
                "detector's machine class the right one? --machine_label names it)"
            )
    return warnings


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, target_fpr: float, domains: np.ndarray | None = None
) -> float:
    """The lowest decision threshold (`prob >= threshold` means machine) whose FPR on human documents is at most
    `target_fpr`. With `domains`, that FPR holds in every domain with human documents: pooled, easy ones (casual
    Reddit posts) would let the hard ones (human M4 texts) take every false positive. The threshold lies halfway
    between the highest human score that must stay below it and the next higher score, so tiny numeric differences
    at prediction time do not flip documents at the boundary."""
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if not (labels == 0).any():
        raise ValueError("choosing a threshold for a false-positive rate needs human documents")
    if domains is not None:
        domains = np.asarray(domains)
        in_domain = [(domains == d) | (labels == 1) for d in np.unique(domains[labels == 0])]
        return max(choose_threshold(labels[keep], probs[keep], target_fpr) for keep in in_domain)
    human_scores = np.sort(probs[labels == 0])[::-1]
    allowed_false_positives = min(int(np.floor(target_fpr * len(human_scores) + 1e-9)), len(human_scores) - 1)
    boundary = human_scores[allowed_false_positives]
    higher = probs[probs > boundary]
    if not len(higher):
        return float(np.nextafter(boundary, np.inf))
    threshold = (boundary + higher.min()) / 2
    return float(threshold if threshold > boundary else higher.min())


def label_name(label: int) -> str:
    return LABEL_NAMES[int(label)]


# ----------------------------------------------------------------------------------------------- baseline


def fit_baseline(train_texts: Sequence[str], train_labels: Sequence[int], seed: int = 0) -> Pipeline:
    """The baseline fitted on the training texts, to score any number of evaluation sets."""
    labels = np.asarray(train_labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError("the baseline needs human and machine training documents")
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=200_000),
        LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed),
    ).fit(list(train_texts), labels)
    logger.info("TF-IDF baseline fitted on %d documents (%d features)", len(labels), len(model[0].vocabulary_))
    return model


def baseline_machine_probs(model: Pipeline, texts: Sequence[str]) -> np.ndarray:
    """P(machine) of each text (same order as given) from a fitted baseline."""
    return model.predict_proba(list(texts))[:, list(model.classes_).index(1)]


def tfidf_baseline_probs(
    train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str], seed: int = 0
) -> np.ndarray:
    """P(machine) for each evaluation text from a baseline fitted on the training texts (same order as given)."""
    return baseline_machine_probs(fit_baseline(train_texts, train_labels, seed), eval_texts)


# ----------------------------------------------------------------------------------------------- evaluation


def documents_frame(documents: list[Document], corpus: Corpus) -> pd.DataFrame:
    """doc_id, label, domain, generator and corpus ("m4" or "reddit_file") of each document."""
    return pd.DataFrame(
        [(doc.doc_id, doc.label, doc.domain, doc.generator, corpus.corpus_name(doc)) for doc in documents],
        columns=["doc_id", "label", "domain", "generator", "corpus"],
    )


def fill_groups(predictions: pd.DataFrame) -> pd.DataFrame:
    """Labelled predictions (`label` 0/1 for every document) with the columns the metrics group by filled in:
    `domain` ("unknown" where the input has none), `generator` (human, else "unknown" where it has none), and
    RAID's `decoding` and `attack` ("unknown") where the input has them."""
    missing = {column: None for column in ("domain", "generator") if column not in predictions}
    labelled = predictions.assign(label=predictions["label"].astype("int64"), **missing)
    for column in ("domain", *(c for c in ("decoding", "attack") if c in labelled)):
        labelled[column] = labelled[column].fillna("unknown")
    default_generator = np.where(labelled["label"] == 0, HUMAN_GENERATOR, "unknown")
    labelled["generator"] = labelled["generator"].where(labelled["generator"].notna(), default_generator)
    return labelled


def prediction_rows(predictions: pd.DataFrame, threshold: float, model: str | None = None) -> list[dict[str, Any]]:
    """The lines of every per-document prediction file (eval_predictions.jsonl, test_predictions/NAME.jsonl and
    predict.py's output; their schema is in TRAINING_GUIDE_COMPLETE.md, "Prediction files"): the PREDICTION_FIELDS
    the frame has, each where the document has a value, `pred` at `threshold`, and `model` first when given."""
    frame = predictions.assign(pred=(predictions["prob_machine"] >= threshold).astype("int64"))
    frame = frame[[field for field in PREDICTION_FIELDS if field in frame.columns]]
    first = {} if model is None else {"model": model}
    return [
        first | {field: value for field, value in row.items() if known[field]}
        for row, known in zip(frame.to_dict("records"), frame.notna().to_dict("records"))
    ]


def _at_threshold(frame: pd.DataFrame, target_fpr: float, threshold: float | None, chosen_on: str) -> dict[str, Any]:
    """The threshold (None: chosen on these documents for `target_fpr`), the document metrics at it and at 0.5."""
    if threshold is None:
        threshold = choose_threshold(frame["label"], frame["prob_machine"], target_fpr, frame["domain"])
        chosen_on = THRESHOLD_CHOSEN_HERE
    return {
        "threshold": {"value": threshold, "target_fpr": target_fpr, "chosen_on": chosen_on},
        "document": document_metrics(frame, threshold),
        "document_at_0.5": document_metrics(frame, 0.5),
    }


def evaluate_predictions(
    predictions: pd.DataFrame,
    target_fpr: float,
    threshold: float | None = None,
    baseline_threshold: float | None = None,
    chosen_on: str | None = None,
) -> dict[str, Any]:
    """Metrics of labelled document predictions (`prob_machine`, optional `baseline_prob_machine`) at 0.5 and at a
    threshold: without `threshold` chosen on these documents for `target_fpr` (training); with it (prediction, test
    sets) the given one, from `chosen_on` (default: the training run's validation documents). The baseline's is
    chosen here for the same target, so both models are compared at the same false-positive budget, unless
    `baseline_threshold` (test sets) is given."""
    applied_from = chosen_on or THRESHOLD_FROM_TRAINING
    result = _at_threshold(predictions, target_fpr, threshold, applied_from)
    if BASELINE_COLUMN in predictions.columns:
        baseline = predictions.drop(columns=["prob_machine"]).rename(columns={BASELINE_COLUMN: "prob_machine"})
        baseline_result = _at_threshold(baseline, target_fpr, baseline_threshold, applied_from)
        result["baseline"] = {"name": BASELINE_NAME, **baseline_result}
    if M4_CORPUS in result["document"].get("by_corpus", {}):
        result["m4_f1_macro"] = _m4_f1_macro(result)
    return result


def _m4_f1_macro(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Macro-F1 on the M4 documents only, for each model at its decision threshold and at 0.5."""
    models = {"transformer": metrics, **({BASELINE_NAME: metrics["baseline"]} if "baseline" in metrics else {})}
    return {
        f"{name}{suffix}": section[key]["by_corpus"].get(M4_CORPUS, {}).get("f1_macro")
        for name, section in models.items()
        for key, suffix in (("document", ""), ("document_at_0.5", "_at_0.5"))
    }
