"""Held-out test sets (`train.py --test_data`): read as predict.py reads its input, cleaned of every text the run
trained or validated on, and scored after training at the threshold chosen on validation, next to the baseline.
Nothing about a test set feeds back into the run (threshold, checkpoint, baseline), so its numbers are unbiased."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

import data_loaders
from m4_training import evaluation
from m4_training.cli import UserError, counted

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "test_predictions"
CHOSEN_ON_VALIDATION = "the validation documents of this run (never on the test set)"


@dataclass
class HeldOutSet:
    name: str
    source: str
    documents: pd.DataFrame  # id, text, label (and domain, generator, corpus, ... as read), overlap removed
    documents_read: int
    overlap_removed: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})

    def summary(self) -> dict[str, Any]:
        """What data_report.json and metrics.json say about the set before any score."""
        labels = self.documents["label"] if len(self.documents) else pd.Series(dtype="int64")
        return {
            "source": self.source,
            "documents_read": self.documents_read,
            "test_overlap_removed": sum(self.overlap_removed.values()),
            "test_overlap_removed_by_split": dict(self.overlap_removed),
            "documents": {"human": int((labels == 0).sum()), "machine": int((labels == 1).sum())},
        }


def set_names(paths: Sequence[str]) -> list[str]:
    """A short unique name per path (its file stem or directory name), usable as a file name."""
    names: list[str] = []
    for path in paths:
        base = re.sub(r"[^\w.-]+", "_", Path(path).stem or Path(path).resolve().name) or "test"
        name, number = base, 2
        while name in names:
            name, number = f"{base}_{number}", number + 1
        names.append(name)
    return names


def m4_selection(
    directory: Path, domains: list[str] | None, generators: list[str] | None
) -> tuple[list[str], list[str]]:
    """The domains and generators to read from an M4 test directory: every file's, or those the flags keep."""
    found = [(d, g) for _, d, g in data_loaders.m4_files(directory)]
    kept = [
        (domain, generator)
        for domain, generator in found
        if (not domains or domain in {d.lower() for d in domains})
        and (not generators or generator in {data_loaders.canonical_generator(g) for g in generators})
    ]
    if not kept:
        what = "matches --test_domains/--test_generators" if found else "is there"
        raise UserError(
            f"--test_data {directory}: no <domain>_<generator>.jsonl file {what} "
            f"(files there: {data_loaders.files_there(directory)})"
        )
    return sorted({d for d, _ in kept}), sorted({g for _, g in kept})


def check_test_names(paths: Sequence[str], test_domains: list[str] | None, test_generators: list[str] | None) -> None:
    """Each --test_domains/--test_generators name must match a file in some --test_data directory: a typo would
    otherwise only leave documents out of the test set."""
    directories = [path for path in paths if Path(path).is_dir()]
    if available := [file for directory in directories for file in data_loaders.m4_files(Path(directory))]:
        requested = [
            data_loaders.RequestedNames("--test_domains", "domains", test_domains or []),
            data_loaders.RequestedNames("--test_generators", "generators", test_generators or []),
        ]
        data_loaders.check_requested_names(f"--test_data {' '.join(directories)}", available, requested)


def read_test_sets(
    paths: Sequence[str],
    test_domains: list[str] | None,
    test_generators: list[str] | None,
    normalization: data_loaders.TextNormalization,
) -> list[HeldOutSet]:
    """Every --test_data input, normalised as training normalises, each document with its label (required)."""
    check_test_names(paths, test_domains, test_generators)
    test_sets = []
    for name, path in zip(set_names(paths), paths):
        domains = generators = None
        if Path(path).is_dir():
            domains, generators = m4_selection(Path(path), test_domains, test_generators)
        try:
            frame, report = data_loaders.read_documents(
                path, "auto", normalization, domains, generators, labels_required=True
            )
            labels = data_loaders.labels_of(frame)
        except UserError as error:
            raise UserError(f"--test_data {path}: {str(error).removeprefix(f'{path}: ')}") from error
        if report is not None and report.skipped:
            skipped = counted(sum(report.skipped.values()), "row")
            logger.warning("%s: %s skipped: %s", report.path, skipped, dict(report.skipped))
        test_sets.append(HeldOutSet(name, str(path), frame.assign(label=labels), len(frame)))
        logger.info("Test set %s: %s from %s", name, counted(len(frame), "labelled document"), path)
    return test_sets


def remove_overlap(test_sets: Iterable[HeldOutSet], train_texts: Iterable[str], val_texts: Iterable[str]) -> None:
    """Drop every test document whose normalised text the run trained on (or validated on), counting both."""
    train, val = set(train_texts), set(val_texts)
    for test_set in test_sets:
        in_train = test_set.documents["text"].isin(train)
        in_val = test_set.documents["text"].isin(val) & ~in_train
        test_set.overlap_removed = {"train": int(in_train.sum()), "validation": int(in_val.sum())}
        test_set.documents = test_set.documents[~(in_train | in_val)].reset_index(drop=True)
        if any(test_set.overlap_removed.values()):
            logger.warning(
                "Test set %s: removed %s also in the training data and %s also in validation",
                test_set.name,
                *(counted(count, "document") for count in test_set.overlap_removed.values()),
            )


def evaluate_test_set(
    test_set: HeldOutSet,
    score: Callable[[list[str]], pd.DataFrame],
    threshold: float,
    target_fpr: float,
    baseline: Pipeline | None = None,
    baseline_threshold: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Metrics at the validation threshold (and 0.5), per domain and generator, with the baseline beside them;
    `score(texts)` returns `prob_machine` and `n_chunks` per text, in order."""
    result = test_set.summary()
    if test_set.documents.empty:
        logger.warning("Test set %s: no document left to score", test_set.name)
        return result, None
    texts = test_set.documents["text"].tolist()
    scored = score(texts)
    predictions = test_set.documents.drop(columns=["text", "line"], errors="ignore").assign(
        prob_machine=scored["prob_machine"].to_numpy(),
        n_chunks=scored["n_chunks"].to_numpy(),
    )
    if baseline is not None:
        predictions[evaluation.BASELINE_COLUMN] = evaluation.baseline_machine_probs(baseline, texts)
    metrics = evaluation.evaluate_predictions(
        evaluation.fill_groups(predictions), target_fpr, threshold, baseline_threshold, chosen_on=CHOSEN_ON_VALIDATION
    )
    return result | metrics, predictions
