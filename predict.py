"""Score documents with a detector trained by train.py: P(machine) per document, over all its chunks.

    python predict.py --model_path outputs/m4-detector --input texts.jsonl --output predictions.jsonl
    cat essay.txt | python predict.py --model_path outputs/m4-detector --input -
    python predict.py --model_path outputs/m4-detector --input M4_cleaned/data --domains arxiv \\
        --generators flant5 --eval --report_dir eval_flant5      # metrics, report.md and plots

Inputs: JSONL with a `text` field (or M4 rows with human_text/machine_text), CSV with a `text` column, a plain
text file (one document), '-' for stdin, or an M4 data directory. Texts are normalised and chunked with the
settings saved in the model's training_config.json, so training and prediction cannot disagree.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import data_loaders
from data_loaders import HUMAN_GENERATOR
from m4_training import evaluation, reports
from m4_training.cli import UserError, run_cli, setup_logging
from m4_training.config import PredictArguments, parse_predict_args
from m4_training.files import check_output_dir, check_output_file, write_failure, write_json, write_jsonl
from m4_training.scoring import Detector, autocast_dtype, load_detector

logger = logging.getLogger("predict")

DEFAULT_TARGET_FPR = 0.05


def score_documents(documents: pd.DataFrame, detector: Detector, args: PredictArguments) -> pd.DataFrame:
    """Every document's `prob_machine` and `n_chunks` over chunks scored in batches that mix documents."""
    scored, _, _ = detector.score(
        documents["text"].tolist(), args.batch_size, autocast_dtype(args.precision), args.aggregate, args.num_proc
    )
    return documents.drop(columns=["text", "line"], errors="ignore").assign(
        prob_machine=scored["prob_machine"].to_numpy(), n_chunks=scored["n_chunks"].to_numpy()
    )


def output_rows(predictions: pd.DataFrame, threshold: float) -> list[dict[str, Any]]:
    passthrough = [c for c in ("input_label", "domain", "generator") if c in predictions.columns]
    rows = []
    for record in predictions.to_dict("records"):
        row = {
            "id": _plain(record["id"]),
            "prob_machine": float(record["prob_machine"]),
            "label": evaluation.label_name(record["prob_machine"] >= threshold),
            "num_chunks": int(record["n_chunks"]),
        }
        rows.append(row | {c: _plain(record[c]) for c in passthrough if not _missing(record[c])})
    return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def evaluate(predictions: pd.DataFrame, detector: Detector, threshold: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics of labelled predictions at the model's threshold (and 0.5), with the baseline when present."""
    labelled = predictions.assign(label=data_loaders.labels_of(predictions))
    for column in ("domain", "generator"):
        if column not in labelled:
            labelled[column] = None
    labelled["domain"] = labelled["domain"].fillna("unknown")
    default_generator = np.where(labelled["label"] == 0, HUMAN_GENERATOR, "unknown")
    labelled["generator"] = labelled["generator"].where(labelled["generator"].notna(), default_generator)
    target_fpr = detector.target_fpr if detector.target_fpr is not None else DEFAULT_TARGET_FPR
    return evaluation.evaluate_predictions(labelled, target_fpr, threshold), labelled


def read(source: str, input_format: str, detector: Detector, args: PredictArguments) -> pd.DataFrame:
    documents, report = data_loaders.read_documents(
        source,
        input_format,
        detector.normalize_digits,
        args.domains or detector.domains,
        args.generators or detector.generators,
        args.reddit_file,
        # The training run's domains and generators are a default: a directory may hold only some of them.
        strict=(args.domains is not None, args.generators is not None),
    )
    if report is not None and report.skipped:
        logger.warning("%s: %d rows skipped: %s", report.path, sum(report.skipped.values()), dict(report.skipped))
    return documents


def baseline_probs(args: PredictArguments, detector: Detector, documents: pd.DataFrame) -> np.ndarray:
    train = read(args.baseline_train, "auto", detector, args)
    labels = data_loaders.labels_of(train)
    if labels.nunique() < 2:
        raise UserError(f"--baseline_train {args.baseline_train}: needs human and machine documents")
    return evaluation.tfidf_baseline_probs(train["text"].tolist(), labels.tolist(), documents["text"].tolist())


def predict(args: PredictArguments) -> int:
    if args.output not in (None, "-"):
        check_output_file(args.output, "--output")
    if args.eval:
        check_output_dir(args.report_dir, "--report_dir")
    try:
        return score_and_write(args)
    except OSError as error:
        if message := write_failure(error, args.output if args.output not in (None, "-") else args.report_dir):
            raise UserError(message) from error
        raise


def score_and_write(args: PredictArguments) -> int:
    detector = load_detector(args.model_path)
    threshold = detector.threshold if args.threshold is None else args.threshold
    documents = read(args.input, args.input_format, detector, args)
    if args.eval:
        data_loaders.labels_of(documents)  # fail on unlabelled input before the model runs
    predictions = score_documents(documents, detector, args)
    if args.eval and args.baseline_train:
        predictions[evaluation.BASELINE_COLUMN] = baseline_probs(args, detector, documents)
    rows = output_rows(predictions, threshold)
    logger.info(
        "Scored %d documents (%d chunks) at threshold %.4f", len(rows), predictions["n_chunks"].sum(), threshold
    )
    if args.eval:
        metrics, labelled = evaluate(predictions, detector, threshold)
        report_dir = Path(args.report_dir)
        write_json(report_dir / "metrics.json", metrics)
        write_jsonl(report_dir / "predictions.jsonl", rows)
        reports.write_report(report_dir, metrics, labelled, f"Evaluation of {args.model_path} on {args.input}")
        print(reports.format_metrics_summary(metrics), file=sys.stderr)
    if args.output not in (None, "-"):
        write_jsonl(args.output, rows)
    elif args.output == "-" or not args.eval:
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        sys.stdout.flush()  # here, where a reader that went away (`| head`) is handled, not at exit
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    return run_cli(lambda: predict(parse_predict_args(argv, description=__doc__)))


if __name__ == "__main__":
    sys.exit(main())
