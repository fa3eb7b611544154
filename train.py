"""Train a human (0) / machine (1) text detector on M4 files plus a Reddit file of human posts.

    python train.py --demo                                   # offline end-to-end run on a built-in sample
    python train.py --data_dir M4_cleaned/data --reddit_file reddit_training_60k.jsonl \\
        --use_class_weights --stratified_split               # a real run

The pipeline: parse -> load -> clean/dedupe/group -> split -> chunk -> train -> evaluate documents -> save.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, disable_progress_bars

import chunking
import data_loaders
import demo
import metrics as metrics_lib
import modeling
import reports
from errors import UserError
from inference import predict_chunk_probs
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
    "epochs": 5,
    "batch_size": 16,
    "lr": 1e-3,
    "use_class_weights": True,
    "logging_steps": 10,
}


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

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="outputs/m4-detector")
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
    is_main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=logging.INFO if is_main else logging.ERROR,
    )
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
    reddit_file = None if str(args.reddit_file).lower() in ("", "none") else args.reddit_file
    corpus = data_loaders.load_corpus(
        args.data_dir, args.train_domains, args.train_generators, reddit_file, args.normalize_digits
    )
    split = data_loaders.split_corpus(
        corpus,
        args.stratified_split,
        args.validation_split,
        args.val_generator,
        args.reddit_val_fraction,
        args.seed,
        args.max_train_samples,
        args.max_val_samples,
    )
    train_chunks, val_chunks = (
        chunking.chunk_documents(
            chunking.documents_to_dataset(docs),
            tokenizer,
            args.max_length,
            args.chunk_overlap,
            args.num_proc,
            desc=f"Chunking {side}",
        )
        for side, docs in (("train", split.train), ("val", split.val))
    )
    class_weights = compute_class_weights(train_chunks["labels"]) if args.use_class_weights else None
    if class_weights:
        logger.info("Class weights (from training chunks): %s", class_weights)
    chunk_counts = {"train": chunking.label_counts(train_chunks), "val": chunking.label_counts(val_chunks)}
    report = reports.build_data_report(corpus, split, chunk_counts, class_weights)
    token_counts = {
        **chunking.document_token_counts(train_chunks, tokenizer, args.chunk_overlap),
        **chunking.document_token_counts(val_chunks, tokenizer, args.chunk_overlap),
    }
    reports.write_json(Path(args.output_dir) / "data_report.json", report)
    reports.write_jsonl(Path(args.output_dir) / "splits.jsonl", reports.split_rows(split, token_counts))
    val_documents = pd.DataFrame(
        [(d.doc_id, d.label, d.domain, d.generator) for d in split.val],
        columns=["doc_id", "label", "domain", "generator"],
    )
    return PreparedData(corpus, split, train_chunks, val_chunks, val_documents, class_weights, report)


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def build_trainer(args: argparse.Namespace, model: Any, tokenizer: Any, data: PreparedData) -> WeightedTrainer:
    from transformers import TrainingArguments

    precision = resolve_precision(args.precision)
    on_gpu = torch.cuda.is_available()
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
        tf32=True if on_gpu and torch.cuda.get_device_capability()[0] >= 8 else None,
        optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        remove_unused_columns=False,
        dataloader_num_workers=min(4, os.cpu_count() or 1) if on_gpu else 0,
        dataloader_pin_memory=on_gpu,
    )
    return WeightedTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train_chunks,
        eval_dataset=data.val_chunks,
        processing_class=tokenizer,
        data_collator=chunking.ChunkCollator(tokenizer, pad_to_multiple_of=8),
        compute_metrics=metrics_lib.compute_chunk_metrics,
        class_weights=data.class_weights,
    )


def evaluate_documents(
    trainer: WeightedTrainer, tokenizer: Any, data: PreparedData, precision: str
) -> tuple[dict, pd.DataFrame]:
    """Chunk probabilities (in dataset order) -> mean per doc_id -> document and chunk metrics."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision))
    probs = predict_chunk_probs(
        trainer.model, data.val_chunks, tokenizer, trainer.args.per_device_eval_batch_size, dtype
    )
    predictions = metrics_lib.aggregate_documents(np.asarray(data.val_chunks["doc_id"]), probs, data.val_documents)
    result = {
        "document": metrics_lib.document_metrics(predictions),
        "chunk": metrics_lib.classification_metrics(np.asarray(data.val_chunks["labels"]), probs),
    }
    return result, predictions


def training_config(args: argparse.Namespace, data: PreparedData, metrics: dict[str, Any]) -> dict[str, Any]:
    import datasets
    import transformers

    return {
        "arguments": vars(args),
        "normalization": {"whitespace": True, "normalize_digits": args.normalize_digits},
        "chunking": {"max_length": args.max_length, "chunk_overlap": args.chunk_overlap},
        "threshold": metrics["document"]["threshold"],
        "data_summary": {k: data.report[k] for k in ("split_flow", "documents", "chunks", "class_weights")},
        "final_metrics": metrics,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
        },
    }


def run(args: argparse.Namespace) -> int:
    if args.demo:
        use_demo_inputs(args)
    tokenizer = modeling.load_tokenizer(args.model)
    data = prepare_data(args, tokenizer)
    print(reports.format_data_summary(data.report))
    if args.dry_run:
        logger.info("Dry run: data reports written to %s", args.output_dir)
        return 0
    model = modeling.load_model(args.model, args.dropout, args.max_length, args.attn_implementation)
    modeling.freeze_parameters(model, args.freeze_base, args.freeze_layers)
    trainer = build_trainer(args, model, tokenizer, data)
    trainer.train()
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        metrics, predictions = evaluate_documents(trainer, tokenizer, data, args.precision)
        output_dir = Path(args.output_dir)
        reports.write_json(output_dir / "metrics.json", metrics)
        reports.write_jsonl(
            output_dir / "eval_predictions.jsonl",
            reports.prediction_rows(predictions, metrics["document"]["threshold"]),
        )
        reports.write_json(output_dir / "training_config.json", training_config(args, data, metrics))
        print(reports.format_metrics_summary(metrics))
        logger.info("Model, tokenizer and reports written to %s", output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
