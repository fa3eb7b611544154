"""Train a human (0) / machine (1) text detector on M4 files plus a Reddit file of human posts.

    python train.py --demo                                   # offline end-to-end run on a built-in sample
    python train.py --data_dir M4_cleaned/data --reddit_file reddit_training_60k.jsonl \\
        --use_class_weights --stratified_split               # a real run
    python train.py settings.json                            # the same from a JSON file: {"data_dir": ..., ...}

The pipeline: parse -> load -> clean/dedupe/group -> split -> chunk -> train -> evaluate documents -> save.
Every transformers TrainingArguments flag works as well (`--max_steps`, `--lr_scheduler_type`, ...).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
import transformers
from datasets import Dataset
from huggingface_hub import upload_folder
from sklearn.pipeline import Pipeline
from transformers import AutoModelForSequenceClassification, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import chunking
import data_loaders
from m4_training import cyclic_gc, data_cache, demo, evaluation, modeling, progress, reports, robustness, run_control
from m4_training.cli import EXIT_TRAINING, UserError, one_line, parse_args_or_json_file, run_cli, setup_logging
from m4_training.data_cache import DataSettings, PreparedChunks
from m4_training.files import apply_umask, write_json, write_jsonl
from m4_training.heldout import PREDICTIONS_DIR, HeldOutSet, evaluate_test_set, read_test_sets, remove_overlap
from m4_training.scoring import autocast_dtype, predict_chunk_probs, score_texts
from m4_training.tracking import log_final_metrics
from m4_training.train_args import DetectorTrainingArguments, TrainConfig, parse_train_args, train_parser
from weighted_trainer import WeightedTrainer, compute_class_weights

logger = logging.getLogger("train")


@dataclass
class PreparedData:
    prepared: PreparedChunks
    class_weights: dict[str, float] | None
    report: dict[str, Any]
    test_sets: list[HeldOutSet] = field(default_factory=list)

    @property
    def train_chunks(self) -> Dataset:
        return self.prepared.train_chunks

    @property
    def val_chunks(self) -> Dataset:
        return self.prepared.val_chunks


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM (a pod being stopped) during a run; its argument is the signal."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While training, SIGINT and SIGTERM raise `Interrupted`."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def interrupt(number: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a forked worker (tokenisation, data loading) ends as it would by default
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        raise Interrupted(signal.Signals(number))

    main_pid = os.getpid()
    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def use_demo_inputs(config: TrainConfig) -> None:
    """Point the model, data directory and Reddit file not given on the command line at the generated sample."""
    demo_dir = Path(config.training.output_dir) / "demo_inputs"
    data_dir, reddit_file, model_dir = demo.prepare_demo(demo_dir, seed=config.training.seed)
    config.data.data_dir = config.data.data_dir or str(data_dir)
    config.data.reddit_file = config.data.reddit_file or str(reddit_file)
    if config.model.model is None:
        config.model.model = str(model_dir)
        if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
            # A 64-wide model gains nothing from a second thread, and on a busy CPU the threads' spin-waiting
            # makes each step up to 10x slower; one thread also makes a seed give the same model on every run.
            torch.set_num_threads(1)
    logger.info("Demo: data in %s, model %s", config.data.data_dir, config.model.model)


def data_settings(config: TrainConfig) -> DataSettings:
    """The data, split and window settings the data stage takes, by name (and --no_cache as no cache directory)."""
    given = asdict(config.data) | asdict(config.split) | asdict(config.chunking)
    given |= {"seed": config.training.seed, "cache_dir": config.data.cache}
    return DataSettings(**{f.name: given[f.name] for f in fields(DataSettings)})


@cyclic_gc.paused()  # its cost would grow with the corpus (see cyclic_gc)
def prepare_data(config: TrainConfig, tokenizer: Any) -> PreparedData:
    """Load, de-duplicate, split and chunk; read the test sets and remove from them every text of the split;
    write data_report.json, splits.jsonl and dropped_documents.jsonl."""
    window, test = config.chunking, config.evaluation
    chunking.check_window(tokenizer, window.max_length, window.chunk_overlap)
    limit = modeling.position_limit(modeling.load_config(config.model.model))
    modeling.check_positions(window.max_length, limit, config.model.model)
    test_sets = read_test_sets(  # bad test input: now
        test.test_data or [], test.test_domains, test.test_generators, data_settings(config).normalization
    )
    prepared = data_cache.prepare(data_settings(config), tokenizer)
    remove_overlap(test_sets, (d.text for d in prepared.split.train), (d.text for d in prepared.split.val))
    class_weights = None
    if config.training.use_class_weights:
        class_weights = compute_class_weights(chunking.column_array(prepared.train_chunks, "labels"))
        logger.info("Class weights (from training chunks): %s", class_weights)
    chunks = {"train": prepared.train_chunks, "val": prepared.val_chunks}
    chunk_counts = {name: chunking.label_counts(part) for name, part in chunks.items()}
    report = reports.build_data_report(prepared.corpus, prepared.split, chunk_counts, class_weights)
    if test_sets:
        report["test_sets"] = {test_set.name: test_set.summary() for test_set in test_sets}
    token_counts = {}
    for part in chunks.values():
        token_counts |= chunking.document_token_counts(part, tokenizer, window.chunk_overlap)
    if config.training.process_index == 0:
        output_dir = Path(config.training.output_dir)
        write_json(output_dir / "data_report.json", report)
        write_jsonl(output_dir / "splits.jsonl", reports.split_rows(prepared.split, token_counts))
        write_jsonl(output_dir / "dropped_documents.jsonl", reports.dropped_rows(prepared.corpus, prepared.split))
    return PreparedData(prepared, class_weights, report, test_sets)


def build_trainer(config: TrainConfig, model: Any, tokenizer: Any, data: PreparedData) -> WeightedTrainer:
    window = config.chunking
    collate = chunking.chunk_collator(tokenizer, window.max_length, window.pad_to_multiple_of, window.pad_to_max_length)
    if config.training.dataloader_num_workers:
        # The workers are forked after preparation used the tokenizer's thread pool; they never tokenise, and
        # saying so stops tokenizers from warning in each of them. Only now: preparation needs the pool (set
        # earlier, tokenisation runs single-threaded, 1.7x slower on 2 cores and far more on a GPU pod).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer = WeightedTrainer(
        model=model,
        args=config.training,
        train_dataset=data.train_chunks,
        eval_dataset=data.val_chunks,
        processing_class=tokenizer,
        data_collator=collate,
        compute_metrics=evaluation.compute_chunk_metrics,
        class_weights=data.class_weights,
        callbacks=run_control.callbacks(config.training),
    )
    progress.use_training_progress(trainer)
    return trainer


def model_for_evaluation(trainer: WeightedTrainer) -> torch.nn.Module:
    """The trained model as one plain module on rank 0: under DDP the Trainer's own; under FSDP or DeepSpeed (sharded)
    the full model `save_model` has just gathered (FULL_STATE_DICT for FSDP, see configs/accelerate_fsdp.yaml)."""
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


def texts_by_doc_id(predictions: pd.DataFrame, documents: list[data_loaders.Document]) -> list[str]:
    """The documents' texts in the order of `predictions`, matched by doc_id (never by position)."""
    return predictions["doc_id"].map({d.doc_id: d.text for d in documents}).tolist()


def evaluate_documents(
    model: torch.nn.Module, tokenizer: Any, data: PreparedData, config: TrainConfig, baseline: Pipeline | None = None
) -> tuple[dict, pd.DataFrame]:
    """Chunk probabilities -> mean per doc_id -> threshold, document metrics and the baseline beside them. The chunks
    are scored again, not taken from the Trainer's length-grouped last evaluation (1% of a run; BENCHMARKS.md)."""
    split, args = data.prepared.split, config.training
    dtype = autocast_dtype(args.precision)
    probs = predict_chunk_probs(model, data.val_chunks, tokenizer, args.per_device_eval_batch_size, dtype)
    doc_ids = chunking.column_array(data.val_chunks, "doc_id")
    documents = evaluation.documents_frame(split.val, data.prepared.corpus)
    predictions = evaluation.aggregate_documents(doc_ids, probs, documents)
    if baseline is not None:  # matched by doc_id, as the chunks are
        texts = texts_by_doc_id(predictions, split.val)
        predictions[evaluation.BASELINE_COLUMN] = evaluation.baseline_machine_probs(baseline, texts)
    result = evaluation.evaluate_predictions(predictions, config.evaluation.target_fpr)
    result["chunk"] = evaluation.classification_metrics(chunking.column_array(data.val_chunks, "labels"), probs)
    return result, predictions


def document_scorer(model: torch.nn.Module, tokenizer: Any, config: TrainConfig) -> Callable[[list[str]], pd.DataFrame]:
    """score(texts) -> `prob_machine` and `n_chunks` per normalised text, in order, with the run's window."""
    window, args = config.chunking, config.training
    batch, dtype = args.per_device_eval_batch_size, autocast_dtype(args.precision)
    return lambda texts: score_texts(texts, model, tokenizer, window.max_length, window.chunk_overlap, batch, dtype)[0]


def evaluate_test_sets(
    score: Callable[[list[str]], pd.DataFrame],
    data: PreparedData,
    config: TrainConfig,
    metrics: dict[str, Any],
    baseline: Pipeline | None,
) -> dict[str, dict[str, Any]]:
    """Each test set's metrics at the thresholds chosen on validation (the model's and the baseline's), and under
    --test_attacks; its predictions go to test_predictions/NAME.jsonl."""
    threshold = metrics["threshold"]["value"]
    baseline_threshold = metrics["baseline"]["threshold"]["value"] if baseline is not None else None
    results = {}
    for test_set in data.test_sets:
        results[test_set.name], predictions = evaluate_test_set(
            test_set, score, threshold, config.evaluation.target_fpr, baseline, baseline_threshold
        )
        if predictions is None:
            continue
        rows = evaluation.prediction_rows(predictions, threshold)
        write_jsonl(Path(config.training.output_dir) / PREDICTIONS_DIR / f"{test_set.name}.jsonl", rows)
        if config.evaluation.attack_rates and predictions["label"].nunique() == 2:
            texts, name = test_set.documents["text"].tolist(), f"test set {test_set.name}"
            attacked = evaluate_under_attacks(score, texts, "id", predictions, config, name, threshold)
            results[test_set.name]["attacks"] = attacked
        elif config.evaluation.attack_rates:
            logger.warning("Test set %s: not scored under attack (it needs human and machine documents)", test_set.name)
    return results


def evaluate_under_attacks(
    score: Callable[[list[str]], pd.DataFrame],
    texts: list[str],
    key_column: str,
    predictions: pd.DataFrame,
    config: TrainConfig,
    documents: str,
    threshold: float,
) -> dict[str, Any]:
    """--test_attacks: labelled `predictions` whose `texts` are scored again after each attack, at thresholds set on
    their clean human documents and at the run's `threshold`; their `key_column` seeds each document's edits."""
    attacks, keys = config.evaluation, predictions[key_column].astype(str).tolist()
    normalize = functools.partial(data_loaders.normalize_text, normalization=data_settings(config).normalization)
    models = attacks.synonym_model, attacks.paraphrase_model
    attacked = robustness.attacked_texts(texts, keys, attacks.attack_rates, config.training.seed, normalize, *models)
    result = robustness.attack_metrics(
        predictions["label"].to_numpy(),
        predictions["prob_machine"].to_numpy(),
        {name: score(attacked_texts)["prob_machine"].to_numpy() for name, (attacked_texts, _) in attacked.items()},
        attacks.attack_rates,
        {name: unchanged for name, (_, unchanged) in attacked.items()},
        threshold,
    )
    return result | {"seed": config.training.seed, "documents": documents}


def selection_summary(config: TrainConfig, trainer: WeightedTrainer) -> dict[str, Any]:
    """Which numbers chose something (validation: threshold, checkpoint) and which chose nothing (test sets)."""
    args = config.training
    checkpoint = (
        f"the checkpoint best on validation {args.metric_for_best_model} ({trainer.state.best_model_checkpoint}), "
        "reloaded at the end"
        if args.load_best_model_at_end
        else "the model after the last step (no selection; --metric_for_best_model to select on validation)"
    )
    return {
        "threshold": "chosen on the validation documents",
        "checkpoint": checkpoint,
        "validation_metrics": "optimistic: validation chose the threshold"
        + (" and the checkpoint" if args.load_best_model_at_end else ""),
        "test_sets": "chose nothing: scored once at the end with the validation threshold"
        if config.evaluation.test_data
        else "none given (--test_data)",
    }


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
        "normalization": {
            "whitespace": True,
            "normalize_digits": config.data.normalize_digits,
            "text_normalization": config.data.text_normalization,
        },
        "chunking": {"max_length": config.chunking.max_length, "chunk_overlap": config.chunking.chunk_overlap},
        "threshold": metrics["document"]["threshold"],
        "target_fpr": config.evaluation.target_fpr,
        "data_summary": {
            k: data.report[k]
            for k in ("split_flow", "documents", "chunks", "class_weights", "test_sets", "generators_by_domain")
            if k in data.report
        },
        "final_metrics": metrics,
        "batch_size": batch_sizes(trainer.args),
        "model_selection": run_control.model_selection_summary(config.training, trainer),
        "arguments": config.as_dict(),
        "versions": {"python": sys.version.split()[0]}
        | {module.__name__: module.__version__ for module in (torch, transformers, datasets)},
    }


def save_results(config: TrainConfig, trainer: WeightedTrainer, tokenizer: Any, data: PreparedData) -> None:
    baseline = None
    # On the training documents, attacked copies included (the transformer's training data), for validation and
    # every test set.
    if config.evaluation.baseline == "tfidf":
        train_documents = data.prepared.split.train
        baseline = evaluation.fit_baseline([d.text for d in train_documents], [d.label for d in train_documents])
    model = model_for_evaluation(trainer)
    metrics, predictions = evaluate_documents(model, tokenizer, data, config, baseline)
    metrics["selection"] = selection_summary(config, trainer)
    score = document_scorer(model, tokenizer, config)
    if config.evaluation.attack_rates:  # texts matched to the predictions by doc_id
        texts = texts_by_doc_id(predictions, data.prepared.split.val)
        threshold = metrics["threshold"]["value"]
        metrics["attacks"] = evaluate_under_attacks(
            score, texts, "doc_id", predictions, config, "validation", threshold
        )
    if data.test_sets:
        metrics["test"] = evaluate_test_sets(score, data, config, metrics, baseline)
    output_dir = Path(config.training.output_dir)
    threshold = metrics["document"]["threshold"]
    rows = evaluation.prediction_rows(predictions.rename(columns={"doc_id": "id"}), threshold)
    write_jsonl(output_dir / "eval_predictions.jsonl", rows)
    settings = training_config(config, data, metrics, trainer)
    write_json(output_dir / "training_config.json", settings)
    reports.write_training_outputs(
        output_dir, trainer.model.config, metrics, predictions, data.report, settings["arguments"]
    )
    log_final_metrics(trainer, metrics)
    write_json(output_dir / "metrics.json", metrics)  # last: it marks the run as finished
    print(reports.format_metrics_summary(metrics, "Validation documents"))
    if "test" in metrics:
        print(reports.format_test_summary(metrics))
    test_sets = {f"Test set {name}": result for name, result in metrics.get("test", {}).items()}
    for title, result in ({"Validation documents": metrics} | test_sets).items():
        if "attacks" in result:
            print(f"{title} under attack:\n" + reports.format_attack_summary(result["attacks"]))
    if config.run.demo:
        print(demo.TOY_NOTE)
    logger.info("Model, tokenizer and reports written to %s", output_dir)
    if config.training.push_to_hub:
        push_to_hub(trainer)


def push_to_hub(trainer: WeightedTrainer) -> None:
    """Upload the output directory (model, tokenizer, model card, reports; no checkpoints) to the Hub, adding the
    model card and reports to the model the Trainer pushed (`save_model` waits for its uploads). Rank 0 alone, so not
    `Trainer.push_to_hub`, which saves the model again and under FSDP needs every process for that."""
    args = trainer.args
    try:
        upload_folder(
            repo_id=trainer.hub_model_id,
            folder_path=args.output_dir,
            commit_message="Detector, model card and reports",
            token=args.hub_token,
            revision=args.hub_revision,
            ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"],  # as the Trainer's own uploads
        )
    except Exception as error:  # the hub client raises many types; the run itself is complete
        raise UserError(
            f"the upload to the Hub failed ({one_line(error)}); the run is complete in {trainer.args.output_dir}: "
            f"upload it again with `hf upload {trainer.hub_model_id} {trainer.args.output_dir}`",
            exit_code=EXIT_TRAINING,
        ) from error
    logger.info("Uploaded %s to the Hub as %s", trainer.args.output_dir, trainer.hub_model_id)


def check_before_work(config: TrainConfig) -> str | None:
    """Everything that can refuse the run, before any expensive work; returns the checkpoint to resume. The local
    inputs come before the model, whose tokenizer may come from the Hub (slow to fail when it is out of reach)."""
    args = config.training
    run_control.guard_output_dir(args)
    checkpoint = run_control.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    settings = data_settings(config)  # the M4 files it selects and the Reddit file (none yet for --demo's)
    if settings.data_dir is not None:
        selection = data_cache.loaded_selection(settings)
        must_match = data_cache.requested_names(settings)
        data_loaders.find_m4_files(Path(settings.data_dir), *selection, warn_missing=False, must_match=must_match)
    if settings.reddit_file is not None:
        data_loaders.check_reddit_file(Path(settings.reddit_file))
    attacks = config.evaluation
    robustness.load_attack_models(attacks.attack_rates, attacks.synonym_model, attacks.paraphrase_model)
    if config.model.model is not None:
        modeling.check_model_source(config.model.model)
    model_bytes = run_control.weights_bytes(config.model.model) if config.model.model else None
    if model_bytes and not config.run.dry_run:
        run_control.check_free_space(args.output_dir, model_bytes, args.save_total_limit)
    if args.push_to_hub and args.process_index == 0 and not config.run.dry_run:
        run_control.create_hub_repository(args)
    return checkpoint


def print_plan(data: PreparedData, args: DetectorTrainingArguments) -> None:
    print(reports.format_data_summary(data.report))
    if data.test_sets:
        print(reports.format_test_data_summary(data.report["test_sets"]))
    print(progress.format_training_plan(len(data.train_chunks), args))
    logger.info(
        "Global batch size %(global_batch_size)d = %(per_device_batch_size)d per device x "
        "%(gradient_accumulation_steps)d accumulation steps x %(world_size)d processes",
        batch_sizes(args),
    )


def train(config: TrainConfig) -> int:
    """The whole run; rank 0 holds the output directory's lock around it (see `main`)."""
    args = config.training
    checkpoint = check_before_work(config)
    with args.main_process_first(local=False, desc="data preparation"):  # the others then read rank 0's cache
        if config.run.demo:
            use_demo_inputs(config)
        tokenizer = modeling.load_tokenizer(config.model.model)
        data = prepare_data(config, tokenizer)
    if args.process_index == 0:
        print_plan(data, args)
    if config.run.dry_run:
        logger.info("Dry run: data reports written to %s", args.output_dir)
        return 0
    set_seed(args.seed)  # a new classification head is initialised at random: same seed, same head
    model = modeling.load_model(config.model.model, config.model.dropout, config.model.attn_implementation)
    if args.process_index == 0:  # now exact, also for a model from the hub
        model_bytes = model.get_memory_footprint(return_buffers=False)
        run_control.check_free_space(args.output_dir, model_bytes, args.save_total_limit)
    modeling.freeze_parameters(model, config.model.freeze_base, config.model.freeze_layers)
    trainer = build_trainer(config, model, tokenizer, data)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(args.output_dir)
        if trainer.is_world_process_zero():
            apply_umask(args.output_dir)
            save_results(config, trainer, tokenizer, data)
    except Exception as error:
        if failure := run_control.write_failure(error, args.output_dir):
            raise failure from error
        raise
    trainer.end()  # every process, after the last result: leaves the process group cleanly
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        flags = parse_args_or_json_file(train_parser(), argv)  # the resume command repeats them
        config = parse_train_args(flags, description=__doc__)
        args = config.training
        setup_logging(logging.INFO if args.process_index == 0 else logging.ERROR)
        if args.process_index != 0:
            datasets.disable_progress_bars()
        # Held from before the guard looks at the directory until the last result is written.
        lock = run_control.lock_output_dir(args.output_dir) if args.process_index == 0 else contextlib.nullcontext()
        try:
            with lock:
                return train(config)
        except Interrupted as interruption:
            number = interruption.args[0]
            exit_code = 128 + number  # as a shell reports a process ended by a signal
            if args.process_index != 0:
                return exit_code
            raise UserError(run_control.interrupted_message(args.output_dir, flags, number.name), exit_code) from None

    with interruptible():
        return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
