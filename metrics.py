"""Metrics for chunks and for whole documents (mean of a document's chunk probabilities)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from transformers import EvalPrediction

from data_loaders import HUMAN_GENERATOR, LABEL_NAMES


def classification_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, macro-F1, precision/recall of the machine class, AUROC and the human false-positive rate."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    preds = (probs >= threshold).astype(np.int64)
    humans = labels == 0
    both_classes = 0 < humans.sum() < len(labels)
    return {
        "n": int(len(labels)),
        "n_human": int(humans.sum()),
        "n_machine": int((~humans).sum()),
        "accuracy": float(accuracy_score(labels, preds)) if len(labels) else None,
        "f1_macro": float(f1_score(labels, preds, average="macro", labels=[0, 1], zero_division=0))
        if both_classes
        else None,
        "precision": float(precision_score(labels, preds, zero_division=0)) if both_classes else None,
        "recall": float(recall_score(labels, preds, zero_division=0)) if (~humans).any() else None,
        "auroc": float(roc_auc_score(labels, probs)) if both_classes else None,
        "fpr_human": float(preds[humans].mean()) if humans.any() else None,
    }


def logits_to_prob_machine(logits: np.ndarray) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)[:, 1]


def compute_chunk_metrics(eval_prediction: EvalPrediction) -> dict[str, Any]:
    """`Trainer.compute_metrics`: chunk-level metrics (predictions and labels arrive in the same order)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    metrics = classification_metrics(eval_prediction.label_ids, logits_to_prob_machine(logits))
    return {k: v for k, v in metrics.items() if v is not None and not k.startswith("n")}


def aggregate_documents(
    chunk_doc_ids: np.ndarray, chunk_probs: np.ndarray, documents: pd.DataFrame, how: str = "mean"
) -> pd.DataFrame:
    """One row per document: its metadata, n_chunks and prob_machine aggregated over its chunks by doc_id."""
    per_chunk = pd.DataFrame({"doc_id": np.asarray(chunk_doc_ids), "prob_machine": np.asarray(chunk_probs)})
    grouped = per_chunk.groupby("doc_id")["prob_machine"].agg([how, "size"])
    grouped.columns = ["prob_machine", "n_chunks"]
    result = documents.merge(grouped, left_on="doc_id", right_index=True, how="left", validate="one_to_one")
    if result["prob_machine"].isna().any():
        missing = result.loc[result["prob_machine"].isna(), "doc_id"].tolist()[:5]
        raise ValueError(f"no chunk prediction for documents {missing}")
    result["n_chunks"] = result["n_chunks"].astype(int)
    return result


def _by(predictions: pd.DataFrame, column: str, threshold: float) -> dict[str, Any]:
    return {
        str(value): classification_metrics(part["label"], part["prob_machine"], threshold)
        for value, part in predictions.groupby(column, sort=True)
    }


def _by_generator(predictions: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Each generator's machine documents scored against all human documents (so AUROC and F1 exist)."""
    humans = predictions[predictions["label"] == 0]
    result = {HUMAN_GENERATOR: classification_metrics(humans["label"], humans["prob_machine"], threshold)}
    machines = predictions[predictions["label"] == 1]
    for generator, part in machines.groupby("generator", sort=True):
        both = pd.concat([humans, part])
        result[str(generator)] = classification_metrics(both["label"], both["prob_machine"], threshold)
    return result


def document_metrics(predictions: pd.DataFrame, threshold: float = 0.5) -> dict[str, Any]:
    """Overall document metrics plus the same per domain, per generator and (when known) per source corpus."""
    metrics = classification_metrics(predictions["label"], predictions["prob_machine"], threshold)
    metrics["threshold"] = threshold
    metrics["by_domain"] = _by(predictions, "domain", threshold)
    metrics["by_generator"] = _by_generator(predictions, threshold)
    if "corpus" in predictions.columns:
        metrics["by_corpus"] = _by(predictions, "corpus", threshold)
    return metrics


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, target_fpr: float, domains: np.ndarray | None = None
) -> float:
    """The lowest decision threshold (`prob >= threshold` means machine) whose FPR on human documents is at most
    `target_fpr`, so recall is as high as that FPR allows. With `domains`, the FPR is held in every domain
    that has human documents: pooled over all humans, easy ones (casual Reddit posts) would let the hard
    ones (human M4 texts) take every false positive.

    The threshold lies halfway between the highest human score that must stay below it and the next higher
    score, so tiny numeric differences at prediction time do not flip documents at the boundary.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if domains is not None:
        domains = np.asarray(domains)
        human_domains = np.unique(domains[labels == 0])
        if not len(human_domains):
            raise ValueError("choosing a threshold for a false-positive rate needs human documents")
        in_domain = [(domains == d) | (labels == 1) for d in human_domains]
        return max(choose_threshold(labels[keep], probs[keep], target_fpr) for keep in in_domain)
    human_scores = np.sort(probs[labels == 0])[::-1]
    if not len(human_scores):
        raise ValueError("choosing a threshold for a false-positive rate needs human documents")
    allowed_false_positives = min(int(np.floor(target_fpr * len(human_scores) + 1e-9)), len(human_scores) - 1)
    boundary = human_scores[allowed_false_positives]
    higher = probs[probs > boundary]
    if not len(higher):
        return float(np.nextafter(boundary, np.inf))
    threshold = (boundary + higher.min()) / 2
    return float(threshold if threshold > boundary else higher.min())


def label_name(label: int) -> str:
    return LABEL_NAMES[int(label)]
