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

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import baseline
import chunking
import evaluation_report
import metrics as metrics_lib
import modeling
import predict_inputs
import reports
from data_loaders import HUMAN_GENERATOR
from errors import UserError, run_cli, setup_cli_logging
from inference import autocast_dtype, predict_chunk_probs

logger = logging.getLogger("predict")

SHOW_PROGRESS_FROM_CHUNKS = 512


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True, help="output directory of train.py")
    parser.add_argument("--input", required=True, help="JSONL, CSV, .txt, an M4 data directory, or '-' (stdin)")
    parser.add_argument("--input_format", choices=predict_inputs.INPUT_FORMATS, default="auto")
    parser.add_argument("--output", default=None, help="JSONL of predictions (default: stdout; with --eval: none)")
    parser.add_argument("--batch_size", type=int, default=64, help="chunks per forward pass, across documents")
    parser.add_argument("--threshold", type=float, default=None, help="default: the one chosen at training")
    parser.add_argument("--aggregate", choices=["mean", "max"], default="mean", help="over a document's chunks")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto", help="GPU autocast")
    parser.add_argument("--num_proc", type=int, default=None, help="processes for tokenisation")

    m4 = parser.add_argument_group("M4 data directory input (as in train.py)")
    m4.add_argument("--domains", "--train_domains", nargs="+", default=None, help="default: the training run's")
    m4.add_argument("--generators", "--train_generators", nargs="+", default=None, help="default: the training run's")
    m4.add_argument("--reddit_file", default=None, help="add this file's human posts")

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval", action="store_true", help="labelled input: write metrics, report and plots")
    evaluation.add_argument("--report_dir", default="eval_report", help="where --eval writes")
    evaluation.add_argument(
        "--baseline_train", default=None, help="labelled input to fit the TF-IDF baseline on (--eval side by side)"
    )
    return parser


def load_training_config(model_path: Path) -> dict[str, Any]:
    if not model_path.is_dir():
        raise UserError(f"model directory not found: {model_path}")
    path = model_path / "training_config.json"
    if not path.is_file():
        raise UserError(f"{model_path} has no training_config.json; predict.py needs a directory written by train.py")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return {
            "normalize_digits": bool(config["normalization"]["normalize_digits"]),
            "max_length": int(config["chunking"]["max_length"]),
            "chunk_overlap": int(config["chunking"]["chunk_overlap"]),
            "threshold": float(config["threshold"]),
            "target_fpr": config.get("arguments", {}).get("target_fpr"),
            "domains": config.get("arguments", {}).get("train_domains"),
            "generators": config.get("arguments", {}).get("train_generators"),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: unreadable or incomplete training config ({error!r})") from error


def load_model(model_path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification

    tokenizer = modeling.load_tokenizer(str(model_path))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_path)
    except Exception as error:  # missing or corrupt weights raise many types
        raise UserError(f"could not load the model in {model_path}: {str(error).strip().splitlines()[0]}") from error
    return tokenizer, model.to("cuda" if torch.cuda.is_available() else "cpu")


def score_documents(
    documents: pd.DataFrame, tokenizer: Any, model: Any, settings: dict[str, Any], args: argparse.Namespace
) -> pd.DataFrame:
    """Chunk every document, score all chunks in batches that mix documents, aggregate per document."""
    texts = chunking.text_dataset(documents["text"].tolist())
    chunks = chunking.chunk_documents(
        texts, tokenizer, settings["max_length"], settings["chunk_overlap"], args.num_proc, desc="Chunking"
    )
    dtype = autocast_dtype(args.precision)
    probs = predict_chunk_probs(
        model, chunks, tokenizer, args.batch_size, dtype, show_progress=len(chunks) >= SHOW_PROGRESS_FROM_CHUNKS
    )
    frame = documents.drop(columns=["text"]).assign(doc_id=np.arange(len(documents)))
    return metrics_lib.aggregate_documents(chunking.column_array(chunks, "doc_id"), probs, frame, how=args.aggregate)


def output_rows(predictions: pd.DataFrame, threshold: float) -> list[dict[str, Any]]:
    passthrough = [c for c in ("input_label", "domain", "generator") if c in predictions.columns]
    rows = []
    for record in predictions.to_dict("records"):
        row = {
            "id": _plain(record["id"]),
            "prob_machine": float(record["prob_machine"]),
            "label": metrics_lib.label_name(record["prob_machine"] >= threshold),
            "num_chunks": int(record["n_chunks"]),
        }
        rows.append(row | {c: _plain(record[c]) for c in passthrough if not _missing(record[c])})
    return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def evaluate(
    predictions: pd.DataFrame, settings: dict[str, Any], threshold: float, args: argparse.Namespace
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics of labelled predictions at the model's threshold (and 0.5), with the baseline when asked."""
    labelled = predictions.assign(label=predict_inputs.parse_labels(predictions))
    for column in ("domain", "generator"):
        if column not in labelled:
            labelled[column] = None
    labelled["domain"] = labelled["domain"].fillna("unknown")
    default_generator = np.where(labelled["label"] == 0, HUMAN_GENERATOR, "unknown")
    labelled["generator"] = labelled["generator"].where(labelled["generator"].notna(), default_generator)
    target_fpr = settings["target_fpr"] if settings["target_fpr"] is not None else 0.05
    return evaluation_report.evaluate_predictions(labelled, target_fpr, threshold), labelled


def baseline_probs(args: argparse.Namespace, settings: dict[str, Any], documents: pd.DataFrame) -> np.ndarray:
    train = read(args.baseline_train, "auto", settings, args)
    labels = predict_inputs.parse_labels(train)
    if labels.nunique() < 2:
        raise UserError(f"--baseline_train {args.baseline_train}: needs human and machine documents")
    return baseline.tfidf_baseline_probs(train["text"].tolist(), labels.tolist(), documents["text"].tolist())


def read(source: str, input_format: str, settings: dict[str, Any], args: argparse.Namespace) -> pd.DataFrame:
    return predict_inputs.read_documents(
        source,
        input_format,
        settings["normalize_digits"],
        args.domains or settings["domains"],
        args.generators or settings["generators"],
        args.reddit_file,
    )


def run(args: argparse.Namespace) -> int:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.baseline_train and not args.eval:
        raise UserError("--baseline_train is used only with --eval")
    model_path = Path(args.model_path)
    settings = load_training_config(model_path)
    threshold = settings["threshold"] if args.threshold is None else args.threshold
    documents = read(args.input, args.input_format, settings, args)
    if args.eval:
        predict_inputs.parse_labels(documents)  # fail on unlabelled input before the model runs
    tokenizer, model = load_model(model_path)
    predictions = score_documents(documents, tokenizer, model, settings, args)
    if args.eval and args.baseline_train:
        predictions[evaluation_report.BASELINE_COLUMN] = baseline_probs(args, settings, documents)
    rows = output_rows(predictions, threshold)
    logger.info(
        "Scored %d documents (%d chunks) at threshold %.4f", len(rows), predictions["n_chunks"].sum(), threshold
    )
    if args.eval:
        metrics, labelled = evaluate(predictions, settings, threshold, args)
        report_dir = Path(args.report_dir)
        reports.write_json(report_dir / "metrics.json", metrics)
        reports.write_jsonl(report_dir / "predictions.jsonl", rows)
        evaluation_report.write_report(report_dir, metrics, labelled, f"Evaluation of {model_path} on {args.input}")
        print(reports.format_metrics_summary(metrics), file=sys.stderr)
    if args.output not in (None, "-"):
        reports.write_jsonl(args.output, rows)
    elif args.output == "-" or not args.eval:
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_cli_logging()
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
