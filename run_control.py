"""What makes a run safe to start, continue and stop: argument checks, the output-directory guard, resume,
early stopping.

Rules for `--output_dir` (documented in TRAINING_GUIDE_COMPLETE.md):
- a directory holding a training run (a `checkpoint-*` folder or `metrics.json`) is never trained or dry-run
  into again unless `--resume_from_checkpoint` continues that run or `--overwrite_output_dir` replaces it;
- `--overwrite_output_dir` deletes the old run's checkpoints and result files first, so `auto` resume and
  checkpoint rotation never mix two runs;
- the outputs of a dry run alone (`data_report.json`, `splits.jsonl`) are not protected: re-running a dry run
  is the normal way to try settings.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

import data_loaders
import distributed
from errors import UserError

logger = logging.getLogger(__name__)

# Written when training ends; removed by --overwrite_output_dir so no stale result sits next to a new split.
RESULT_FILES = (
    "metrics.json",
    "eval_predictions.jsonl",
    "training_config.json",
    "report.md",
    "confusion_matrix.png",
    "roc.png",
)
# The chunk-level validation loss decides early stopping and the checkpoint kept: it is the quantity
# being optimised and, unlike accuracy at a threshold, it does not jump on a handful of documents.
EARLY_STOPPING_METRIC = "eval_loss"


def check_arguments(args: argparse.Namespace) -> None:
    """Cross-argument checks that argparse cannot express; each failure is one line and exit code 2."""
    data_loaders.check_validation_split(args.validation_split)
    data_loaders.check_reddit_val_fraction(args.reddit_val_fraction)
    if args.resume_from_checkpoint and args.overwrite_output_dir:
        raise UserError("--resume_from_checkpoint continues a run and --overwrite_output_dir replaces it: pick one")
    if args.early_stopping_patience is not None and args.early_stopping_patience < 1:
        raise UserError(f"--early_stopping_patience must be at least 1, got {args.early_stopping_patience}")
    if args.save_total_limit is not None and args.save_total_limit < 1:
        raise UserError(f"--save_total_limit must be at least 1, got {args.save_total_limit}")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise UserError(f"--lr must be a positive number, got {args.lr}")


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir())


def guard_output_dir(args: argparse.Namespace) -> None:
    """Refuse to overwrite a training run by accident; with --overwrite_output_dir clear the old one (rank 0)."""
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir() or args.resume_from_checkpoint:
        return
    checkpoints = _checkpoints(output_dir)
    finished = (output_dir / "metrics.json").is_file()
    if not checkpoints and not finished:
        return
    if not args.overwrite_output_dir:
        state = "a finished run (metrics.json)" if finished else f"an unfinished run ({checkpoints[-1].name})"
        advice = "" if finished else "--resume_from_checkpoint auto to continue it, "
        raise UserError(
            f"--output_dir {output_dir} holds {state}; pass {advice}--overwrite_output_dir to replace it, "
            "or choose another --output_dir"
        )
    if distributed.is_main_process():
        for checkpoint in checkpoints:
            shutil.rmtree(checkpoint)
        for name in RESULT_FILES:
            (output_dir / name).unlink(missing_ok=True)
        logger.warning("--overwrite_output_dir: removed the previous run's checkpoints and results in %s", output_dir)


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`auto` -> the newest checkpoint-N in output_dir; a path must be a Trainer checkpoint directory."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "auto":
        newest = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if newest is None:
            raise UserError(
                f"--resume_from_checkpoint auto: no {PREFIX_CHECKPOINT_DIR}-N directory in {output_dir} "
                "(checkpoints are saved every --eval_steps steps, or every epoch)"
            )
        logger.info("Resuming from %s", newest)
        return newest
    path = Path(resume_from_checkpoint)
    if not (path / "trainer_state.json").is_file():
        raise UserError(
            f"--resume_from_checkpoint {path}: not a checkpoint directory (no trainer_state.json); "
            f"pass a {PREFIX_CHECKPOINT_DIR}-N directory or 'auto'"
        )
    return str(path)


def model_selection_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """TrainingArguments for early stopping: keep and finally load the checkpoint with the lowest eval loss."""
    if args.early_stopping_patience is None:
        return {}
    return {"load_best_model_at_end": True, "metric_for_best_model": EARLY_STOPPING_METRIC, "greater_is_better": False}


def callbacks(args: argparse.Namespace) -> list[TrainerCallback]:
    if args.early_stopping_patience is None:
        return []
    logger.warning(
        "Early stopping on %s with patience %d: the kept checkpoint is chosen on the validation set, so the final "
        "validation metrics are slightly optimistic; judge the model on data it was not selected on",
        EARLY_STOPPING_METRIC,
        args.early_stopping_patience,
    )
    return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]


def model_selection_summary(args: argparse.Namespace, trainer: Any) -> dict[str, Any] | None:
    """For training_config.json: how the saved model was chosen (None: the last step's model)."""
    if args.early_stopping_patience is None:
        return None
    state = trainer.state
    return {
        "early_stopping_patience": args.early_stopping_patience,
        "metric": EARLY_STOPPING_METRIC,
        "best_metric": state.best_metric,
        "best_checkpoint": state.best_model_checkpoint,
        "stopped_at_step": state.global_step,
        "max_steps": state.max_steps,
        "selected_on": "validation",
    }
