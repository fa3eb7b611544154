"""Train a human (0) / machine (1) text detector on M4 files plus a Reddit file of human posts.

    python train.py --demo                                   # offline end-to-end run on a built-in sample
    python train.py --data_dir M4_cleaned/data --reddit_file reddit_training_60k.jsonl \\
        --use_class_weights --stratified_split               # a real run

The pipeline: parse -> load -> clean/dedupe/group -> split -> chunk -> train -> evaluate documents -> save.
Every transformers TrainingArguments flag works as well (`--max_steps`, `--lr_scheduler_type`, ...).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
import transformers
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, set_seed

import chunking
from m4_training import cyclic_gc, data_cache, demo, evaluation, modeling, reports, run_control
from m4_training.cli import UserError, one_line, run_cli, setup_logging
from m4_training.config import TrainConfig, check_positions, check_window, parse_train_args
from m4_training.data_cache import PreparedChunks
from m4_training.files import write_json, write_jsonl
from m4_training.scoring import autocast_dtype, score_chunks
from weighted_trainer import WeightedTrainer, compute_class_weights

logger = logging.getLogger("train")


@dataclass
class PreparedData:
    prepared: PreparedChunks
    val_documents: pd.DataFrame
    class_weights: dict[str, float] | None
    report: dict[str, Any]

    @property
    def train_chunks(self) -> Dataset:
        return self.prepared.train_chunks

    @property
    def val_chunks(self) -> Dataset:
        return self.prepared.val_chunks


def use_demo_inputs(config: TrainConfig) -> None:
    """Point the model, data directory and Reddit file not given on the command line at the generated sample."""
    data_dir, reddit_file, model_dir = demo.prepare_demo(
        Path(config.training.output_dir) / "demo_inputs", seed=config.training.seed
    )
    config.data.data_dir = config.data.data_dir or str(data_dir)
    config.data.reddit_file = config.data.reddit_file or str(reddit_file)
    config.model.model = config.model.model or str(model_dir)
    logger.info("Demo: data in %s, model %s", config.data.data_dir, config.model.model)


@cyclic_gc.paused()  # its cost would grow with the corpus (see cyclic_gc)
def prepare_data(config: TrainConfig, tokenizer: Any) -> PreparedData:
    """Load, de-duplicate, split and chunk; write data_report.json, splits.jsonl and dropped_documents.jsonl."""
    window = config.chunking
    check_window(tokenizer, window.max_length, window.chunk_overlap)
    check_positions(
        window.max_length, modeling.position_limit(modeling.load_config(config.model.model)), config.model.model
    )
    prepared = data_cache.prepare(config, tokenizer)
    class_weights = None
    if config.training.use_class_weights:
        class_weights = compute_class_weights(chunking.column_array(prepared.train_chunks, "labels"))
        logger.info("Class weights (from training chunks): %s", class_weights)
    chunk_counts = {
        "train": chunking.label_counts(prepared.train_chunks),
        "val": chunking.label_counts(prepared.val_chunks),
    }
    report = reports.build_data_report(prepared.corpus, prepared.split, chunk_counts, class_weights)
    token_counts = {
        **chunking.document_token_counts(prepared.train_chunks, tokenizer, window.chunk_overlap),
        **chunking.document_token_counts(prepared.val_chunks, tokenizer, window.chunk_overlap),
    }
    if config.training.process_index == 0:
        output_dir = Path(config.training.output_dir)
        write_json(output_dir / "data_report.json", report)
        write_jsonl(output_dir / "splits.jsonl", reports.split_rows(prepared.split, token_counts))
        write_jsonl(output_dir / "dropped_documents.jsonl", reports.dropped_rows(prepared.corpus, prepared.split))
    val_documents = evaluation.documents_frame(prepared.split.val, prepared.corpus)
    return PreparedData(prepared, val_documents, class_weights, report)


def build_trainer(config: TrainConfig, model: Any, tokenizer: Any, data: PreparedData) -> WeightedTrainer:
    window = config.chunking
    if config.training.dataloader_num_workers:
        # The workers are forked after preparation used the tokenizer's thread pool; they never tokenise, and
        # saying so stops tokenizers from warning in each of them. Only now: preparation needs the pool (set
        # earlier, tokenisation runs single-threaded, 1.7x slower on 2 cores and far more on a GPU pod).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return WeightedTrainer(
        model=model,
        args=config.training,
        train_dataset=data.train_chunks,
        eval_dataset=data.val_chunks,
        processing_class=tokenizer,
        data_collator=chunking.chunk_collator(
            tokenizer, window.max_length, window.pad_to_multiple_of, window.pad_to_max_length
        ),
        compute_metrics=evaluation.compute_chunk_metrics,
        class_weights=data.class_weights,
        callbacks=run_control.callbacks(config.training),
    )


def model_for_evaluation(trainer: WeightedTrainer) -> torch.nn.Module:
    """The trained model as one plain module on rank 0, for the sequential document evaluation.

    Under DDP that is the Trainer's own model. Under FSDP or DeepSpeed the parameters are sharded across the
    processes, so rank 0 reloads the full model that `save_model` has just gathered into the output directory
    (needs FULL_STATE_DICT for FSDP, see configs/accelerate_fsdp.yaml).
    """
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        return trainer.model
    try:
        model = AutoModelForSequenceClassification.from_pretrained(trainer.args.output_dir)
    except OSError as error:
        raise UserError(
            f"the sharded run saved no full model in {trainer.args.output_dir} to evaluate ({one_line(error)}); set "
            "fsdp_state_dict_type: FULL_STATE_DICT (FSDP) or stage3_gather_16bit_weights_on_model_save (DeepSpeed)"
        ) from error
    return model.to(trainer.args.device)


def evaluate_documents(
    trainer: WeightedTrainer, tokenizer: Any, data: PreparedData, config: TrainConfig
) -> tuple[dict, pd.DataFrame]:
    """Chunk probabilities -> mean per doc_id -> threshold, document metrics and the baseline beside them."""
    split = data.prepared.split
    predictions, probs = score_chunks(
        model_for_evaluation(trainer),
        tokenizer,
        data.val_chunks,
        data.val_documents,
        trainer.args.per_device_eval_batch_size,
        autocast_dtype(config.training.precision),
    )
    if config.evaluation.baseline == "tfidf":
        baseline_probs = evaluation.tfidf_baseline_probs(
            [d.text for d in split.train], [d.label for d in split.train], [d.text for d in split.val]
        )
        by_doc_id = pd.Series(baseline_probs, index=[d.doc_id for d in split.val])
        predictions[evaluation.BASELINE_COLUMN] = predictions["doc_id"].map(by_doc_id)
    result = evaluation.evaluate_predictions(predictions, config.evaluation.target_fpr)
    result["chunk"] = evaluation.classification_metrics(chunking.column_array(data.val_chunks, "labels"), probs)
    return result, predictions


def batch_sizes(args: Any) -> dict[str, int]:
    """Per-device size, accumulation steps and process count behind one optimizer step."""
    return {
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
    }


def training_config(
    config: TrainConfig, data: PreparedData, metrics: dict[str, Any], trainer: WeightedTrainer
) -> dict[str, Any]:
    """training_config.json: what predict.py and the page need to score as training did, and every setting."""
    return {
        "normalization": {"whitespace": True, "normalize_digits": config.data.normalize_digits},
        "chunking": {"max_length": config.chunking.max_length, "chunk_overlap": config.chunking.chunk_overlap},
        "threshold": metrics["document"]["threshold"],
        "target_fpr": config.evaluation.target_fpr,
        "data_summary": {k: data.report[k] for k in ("split_flow", "documents", "chunks", "class_weights")},
        "final_metrics": metrics,
        "batch_size": batch_sizes(trainer.args),
        "model_selection": run_control.model_selection_summary(config.training, trainer),
        "arguments": config.as_dict(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
        },
    }


def save_results(config: TrainConfig, trainer: WeightedTrainer, tokenizer: Any, data: PreparedData) -> None:
    metrics, predictions = evaluate_documents(trainer, tokenizer, data, config)
    output_dir = Path(config.training.output_dir)
    threshold = metrics["document"]["threshold"]
    write_jsonl(output_dir / "eval_predictions.jsonl", reports.prediction_rows(predictions, threshold))
    settings = training_config(config, data, metrics, trainer)
    write_json(output_dir / "training_config.json", settings)
    reports.write_training_outputs(
        output_dir, trainer.model.config, metrics, predictions, data.report, settings["arguments"]
    )
    write_json(output_dir / "metrics.json", metrics)  # last: it marks the run as finished
    print(reports.format_metrics_summary(metrics))
    logger.info("Model, tokenizer and reports written to %s", output_dir)


def train(config: TrainConfig) -> int:
    args = config.training
    run_control.guard_output_dir(args)
    checkpoint = run_control.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    with args.main_process_first(local=False, desc="data preparation"):  # the others then read rank 0's cache
        if config.run.demo:
            use_demo_inputs(config)
        tokenizer = modeling.load_tokenizer(config.model.model)
        data = prepare_data(config, tokenizer)
    if args.process_index == 0:
        print(reports.format_data_summary(data.report))
    if config.run.dry_run:
        logger.info("Dry run: data reports written to %s", args.output_dir)
        return 0
    set_seed(args.seed)  # a new classification head is initialised at random: same seed, same head
    model = modeling.load_model(config.model.model, config.model.dropout, config.model.attn_implementation)
    modeling.freeze_parameters(model, config.model.freeze_base, config.model.freeze_layers)
    trainer = build_trainer(config, model, tokenizer, data)
    sizes = batch_sizes(args)
    logger.info(
        "Global batch size %d = %d per device x %d accumulation steps x %d processes",
        *(
            sizes[k]
            for k in ("global_batch_size", "per_device_batch_size", "gradient_accumulation_steps", "world_size")
        ),
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        save_results(config, trainer, tokenizer, data)
    return 0


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        config = parse_train_args(argv, description=__doc__)
        setup_logging(logging.INFO if config.training.process_index == 0 else logging.ERROR)
        if config.training.process_index != 0:
            datasets.disable_progress_bars()
        return train(config)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
