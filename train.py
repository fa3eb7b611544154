"""Train a human (0) / machine (1) text detector on M4 files plus a Reddit file of human posts.

    python train.py --demo                                   # offline end-to-end run on a built-in sample
    python train.py --data_dir M4_cleaned/data --reddit_file reddit_training_60k.jsonl \\
        --use_class_weights --stratified_split               # a real run

The pipeline: parse -> load -> clean/dedupe/group -> split -> chunk -> train -> evaluate documents -> save.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
import transformers
from datasets import Dataset, disable_progress_bars
from datasets import config as datasets_config
from transformers import TrainingArguments, set_seed

import baseline
import chunking
import data_cache
import data_loaders
import demo
import distributed
import evaluation_report
import metrics as metrics_lib
import modeling
import reports
import run_control
import speed_settings
from errors import UserError, run_cli, setup_cli_logging
from inference import autocast_dtype, predict_chunk_probs, resolve_precision
from weighted_trainer import WeightedTrainer, compute_class_weights

logger = logging.getLogger("train")

DEFAULT_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow", "peerread"]
DEFAULT_GENERATORS = ["chatGPT", "davinci", "cohere", "dolly", "flant5"]
# `--demo` changes these defaults (explicit flags still win).
DEMO_DEFAULTS = {
    "output_dir": "demo_output",
    "train_domains": list(demo.DEMO_DOMAINS),
    "train_generators": list(demo.DEMO_GENERATOR_FILES),
    "max_length": 128,
    "chunk_overlap": 16,
    "validation_split": 0.25,
    "reddit_val_fraction": 0.25,
    "epochs": 5,
    "batch_size": 16,
    "lr": 1e-3,
    "use_class_weights": True,
    "logging_steps": 10,
    "overwrite_output_dir": True,
}


def fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="roberta-base", help="hub id or local directory")
    model.add_argument("--dropout", type=float, default=0.1, help="dropout of the encoder and classifier")
    model.add_argument("--freeze_base", action="store_true", help="train only the classification head")
    model.add_argument("--freeze_layers", type=int, default=0, help="freeze embeddings and the first N layers")
    model.add_argument("--attn_implementation", default="sdpa", help="sdpa, eager, flash_attention_2, ...")

    data = parser.add_argument_group("data")
    data.add_argument("--data_dir", default="M4_cleaned/data", help="directory of <domain>_<generator>.jsonl")
    data.add_argument("--reddit_file", default="reddit_training_60k.jsonl", help="JSONL of human posts; 'none' skips")
    data.add_argument("--train_domains", nargs="+", default=DEFAULT_DOMAINS)
    data.add_argument("--train_generators", nargs="+", default=DEFAULT_GENERATORS)
    data.add_argument("--normalize_digits", action="store_true", default=True, help="map every digit to 0 (default)")
    data.add_argument("--no_normalize_digits", dest="normalize_digits", action="store_false", help="keep digits")
    data.add_argument("--max_train_samples", type=int, default=None, help="documents, drawn as whole groups")
    data.add_argument("--max_val_samples", type=int, default=None, help="documents, drawn as whole groups")

    split = parser.add_argument_group("split")
    split.add_argument("--stratified_split", action="store_true", help="grouped split stratified by label and domain")
    split.add_argument("--validation_split", type=float, default=0.1, help="validation share of documents/groups")
    split.add_argument("--val_generator", default="flant5", help="generator held out for validation")
    split.add_argument("--reddit_val_fraction", type=float, default=0.1, help="Reddit share in hold-out validation")

    chunks = parser.add_argument_group("chunking")
    chunks.add_argument("--max_length", type=int, default=512, help="tokens per chunk, special tokens included")
    chunks.add_argument("--chunk_overlap", type=int, default=50, help="tokens shared by neighbouring chunks")
    chunks.add_argument("--num_proc", type=int, default=None, help="processes for tokenisation")
    chunks.add_argument(
        "--cache_dir",
        default=str(Path(datasets_config.HF_DATASETS_CACHE) / "m4_detector_prepared"),
        help="prepared (split, chunked) data is cached here, keyed by data, tokenizer and settings",
    )
    chunks.add_argument("--no_cache", action="store_true", help="prepare the data again and cache nothing")

    speed = parser.add_argument_group("speed (defaults are fast on a GPU; each can be turned off)")
    speed.add_argument("--pad_to_multiple_of", type=int, default=8, help="dynamic padding granularity; 0 = exact")
    speed.add_argument("--pad_to_max_length", action="store_true", help="pad every batch to --max_length (slow)")
    speed.add_argument(
        "--no_group_by_length", dest="group_by_length", action="store_false", help="random batches, not by length"
    )
    speed.add_argument("--optim", default="auto", help="auto: adamw_torch_fused on GPU, adamw_torch on CPU")
    speed.add_argument("--no_tf32", dest="tf32", action="store_false", help="keep fp32 matmuls exact on Ampere+")
    speed.add_argument(
        "--dataloader_num_workers", type=int, default=None, help="default: min(4, CPUs) on GPU, 0 on CPU"
    )
    speed.add_argument("--no_pin_memory", dest="pin_memory", action="store_false", help="no pinned host memory")
    speed.add_argument("--torch_compile", action="store_true", help="compile the model with torch.compile")
    speed.add_argument(
        "--ddp_find_unused_parameters", action="store_true",
        help="multi-GPU: let DDP search for parameters without gradients every step (slower; only if DDP asks)",
    )

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=float, default=3)
    train.add_argument("--batch_size", type=int, default=16, help="per device")
    train.add_argument("--eval_batch_size", type=int, default=64, help="per device")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--lr", type=float, default=2e-5)
    train.add_argument("--weight_decay", type=float, default=0.01)
    train.add_argument("--warmup_ratio", type=float, default=0.06)
    train.add_argument("--use_class_weights", action="store_true", help="weight the loss by N/(2*N_c) of chunks")
    train.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="auto: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU",
    )
    train.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="= --precision bf16")
    train.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="= --precision fp16")
    train.add_argument("--eval_steps", type=int, default=None, help="evaluate/save every N steps (default: epoch)")
    train.add_argument("--logging_steps", type=int, default=50)
    train.add_argument("--save_total_limit", type=int, default=2)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument(
        "--early_stopping_patience",
        type=int,
        default=None,
        help="stop after N evaluations without a lower eval loss and keep the best checkpoint (default: off)",
    )

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--target_fpr", type=fraction, default=0.05, help="decision threshold: human-document FPR on validation"
    )
    evaluation.add_argument("--baseline", choices=["tfidf", "none"], default="tfidf", help="classical baseline")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="outputs/m4-detector")
    run.add_argument("--overwrite_output_dir", action="store_true", help="replace a finished or unfinished run")
    run.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint-N directory, or auto (newest)")
    run.add_argument("--report_to", choices=["none", "wandb", "tensorboard"], default="none")
    run.add_argument("--use_wandb", dest="report_to", action="store_const", const="wandb", help="= --report_to wandb")
    run.add_argument("--run_name", default=None)
    run.add_argument("--dry_run", action="store_true", help="load, split and chunk only; write the data reports")
    run.add_argument("--demo", action="store_true", help="run offline on a generated sample with a tiny model")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo:
        parser.set_defaults(**DEMO_DEFAULTS)
        args = parser.parse_args(argv)
    return args


def setup_logging() -> None:
    is_main = distributed.is_main_process()
    setup_cli_logging(logging.INFO if is_main else logging.ERROR)
    if not is_main:
        disable_progress_bars()


@dataclass
class PreparedData:
    corpus: data_loaders.Corpus
    split: data_loaders.Split
    train_chunks: Dataset
    val_chunks: Dataset
    val_documents: pd.DataFrame
    class_weights: dict[str, float] | None
    report: dict[str, Any]


def use_demo_inputs(args: argparse.Namespace) -> None:
    """Point --data_dir, --reddit_file and --model at the generated sample and tiny model."""
    data_dir, reddit_file, model_dir = demo.prepare_demo(Path(args.output_dir) / "demo_inputs", seed=args.seed)
    args.data_dir, args.reddit_file, args.model = str(data_dir), str(reddit_file), str(model_dir)
    logger.info("Demo: data in %s, tiny model in %s", data_dir, model_dir)


def prepare_data(args: argparse.Namespace, tokenizer: Any) -> PreparedData:
    """Load, de-duplicate, split and chunk; write data_report.json and splits.jsonl."""
    chunking.check_window(tokenizer, args.max_length, args.chunk_overlap)
    if tokenizer.model_max_length < 1_000_000 and args.max_length > tokenizer.model_max_length:
        raise UserError(f"--max_length {args.max_length} exceeds the tokenizer's limit {tokenizer.model_max_length}")
    modeling.check_max_length(args.model, args.max_length)
    reddit_file = None if str(args.reddit_file).lower() in ("", "none") else args.reddit_file
    settings = data_cache.PreparationSettings.from_args(args, reddit_file)
    cache_dir = None if args.no_cache else args.cache_dir
    corpus, split, train_chunks, val_chunks = data_cache.prepare(settings, tokenizer, cache_dir, args.num_proc)
    class_weights = None
    if args.use_class_weights:
        class_weights = compute_class_weights(chunking.column_array(train_chunks, "labels"))
        logger.info("Class weights (from training chunks): %s", class_weights)
    chunk_counts = {"train": chunking.label_counts(train_chunks), "val": chunking.label_counts(val_chunks)}
    report = reports.build_data_report(corpus, split, chunk_counts, class_weights)
    token_counts = {
        **chunking.document_token_counts(train_chunks, tokenizer, args.chunk_overlap),
        **chunking.document_token_counts(val_chunks, tokenizer, args.chunk_overlap),
    }
    if distributed.is_main_process():
        reports.write_json(Path(args.output_dir) / "data_report.json", report)
        reports.write_jsonl(Path(args.output_dir) / "splits.jsonl", reports.split_rows(split, token_counts))
        reports.write_jsonl(Path(args.output_dir) / "dropped_documents.jsonl", reports.dropped_rows(corpus, split))
    val_documents = evaluation_report.documents_frame(split.val, corpus)
    return PreparedData(corpus, split, train_chunks, val_chunks, val_documents, class_weights, report)


def build_trainer(args: argparse.Namespace, model: Any, tokenizer: Any, data: PreparedData) -> WeightedTrainer:
    precision = resolve_precision(args.precision)
    strategy = "steps" if args.eval_steps else "epoch"
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=args.eval_steps,
        save_steps=args.eval_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        report_to=[] if args.report_to == "none" else [args.report_to],
        run_name=args.run_name,
        seed=args.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        remove_unused_columns=False,
        **speed_settings.trainer_speed_arguments(args),
        use_cpu=distributed.cpu_only(),
        **run_control.model_selection_arguments(args),
    )
    return WeightedTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train_chunks,
        eval_dataset=data.val_chunks,
        processing_class=tokenizer,
        data_collator=speed_settings.chunk_collator(tokenizer, args),
        compute_metrics=metrics_lib.compute_chunk_metrics,
        class_weights=data.class_weights,
        callbacks=run_control.callbacks(args),
    )


def evaluate_documents(
    trainer: WeightedTrainer, tokenizer: Any, data: PreparedData, args: argparse.Namespace
) -> tuple[dict, pd.DataFrame]:
    """Chunk probabilities (in dataset order) -> mean per doc_id -> threshold, document metrics and baseline."""
    dtype = autocast_dtype(args.precision)
    model = distributed.model_for_evaluation(trainer, args.output_dir)
    probs = predict_chunk_probs(model, data.val_chunks, tokenizer, trainer.args.per_device_eval_batch_size, dtype)
    doc_ids = chunking.column_array(data.val_chunks, "doc_id")
    predictions = metrics_lib.aggregate_documents(doc_ids, probs, data.val_documents)
    if args.baseline == "tfidf":
        baseline_probs = baseline.tfidf_baseline_probs(
            [d.text for d in data.split.train], [d.label for d in data.split.train], [d.text for d in data.split.val]
        )
        by_doc_id = pd.Series(baseline_probs, index=[d.doc_id for d in data.split.val])
        predictions[evaluation_report.BASELINE_COLUMN] = predictions["doc_id"].map(by_doc_id)
    result = evaluation_report.evaluate_predictions(predictions, args.target_fpr)
    result["chunk"] = metrics_lib.classification_metrics(chunking.column_array(data.val_chunks, "labels"), probs)
    return result, predictions


def training_config(
    args: argparse.Namespace, data: PreparedData, metrics: dict[str, Any], trainer: WeightedTrainer
) -> dict[str, Any]:
    return {
        "arguments": vars(args),
        "normalization": {"whitespace": True, "normalize_digits": args.normalize_digits},
        "chunking": {"max_length": args.max_length, "chunk_overlap": args.chunk_overlap},
        "threshold": metrics["document"]["threshold"],
        "data_summary": {k: data.report[k] for k in ("split_flow", "documents", "chunks", "class_weights")},
        "final_metrics": metrics,
        "batch_size": distributed.batch_sizes(trainer.args),
        "model_selection": run_control.model_selection_summary(args, trainer),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
        },
    }


def run(args: argparse.Namespace) -> int:
    run_control.check_arguments(args)
    run_control.guard_output_dir(args)
    checkpoint = run_control.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    with distributed.main_process_first():  # the others then read what rank 0 prepared
        if args.demo:
            use_demo_inputs(args)
        tokenizer = modeling.load_tokenizer(args.model)
        data = prepare_data(args, tokenizer)
    if distributed.is_main_process():
        print(reports.format_data_summary(data.report))
    if args.dry_run:
        logger.info("Dry run: data reports written to %s", args.output_dir)
        return 0
    set_seed(args.seed)  # a new classification head is initialised at random: same seed, same head
    model = modeling.load_model(args.model, args.dropout, args.max_length, args.attn_implementation)
    modeling.freeze_parameters(model, args.freeze_base, args.freeze_layers)
    trainer = build_trainer(args, model, tokenizer, data)
    distributed.log_batch_size(trainer.args)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        metrics, predictions = evaluate_documents(trainer, tokenizer, data, args)
        output_dir = Path(args.output_dir)
        reports.write_jsonl(
            output_dir / "eval_predictions.jsonl",
            reports.prediction_rows(predictions, metrics["document"]["threshold"]),
        )
        reports.write_json(output_dir / "training_config.json", training_config(args, data, metrics, trainer))
        evaluation_report.write_training_outputs(
            output_dir, trainer.model.config, metrics, predictions, data.report, vars(args)
        )
        reports.write_json(output_dir / "metrics.json", metrics)  # last: it marks the run as finished
        print(reports.format_metrics_summary(metrics))
        logger.info("Model, tokenizer and reports written to %s", output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
