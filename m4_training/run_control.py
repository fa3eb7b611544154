"""What makes a run safe to start, continue and stop: the output-directory guard, resume, early stopping.

Rules for `--output_dir` (documented in TRAINING_GUIDE_COMPLETE.md):
- a directory holding a training run (a `checkpoint-*` folder or `metrics.json`) is never trained or dry-run
  into again unless `--resume_from_checkpoint` continues that run or `--overwrite_output_dir` replaces it;
- `--overwrite_output_dir` deletes the old run's checkpoints and result files first, so `auto` resume and
  checkpoint rotation never mix two runs;
- the outputs of a dry run alone (`data_report.json`, `splits.jsonl`) are not protected: re-running a dry run
  is the normal way to try settings.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from m4_training.cli import UserError
from m4_training.config import DetectorTrainingArguments

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
RESULT_DIRS = ("test_predictions",)


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir())


def guard_output_dir(args: DetectorTrainingArguments) -> None:
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
    if args.process_index == 0:
        for checkpoint in checkpoints:
            shutil.rmtree(checkpoint)
        for name in RESULT_FILES:
            (output_dir / name).unlink(missing_ok=True)
        for name in RESULT_DIRS:
            shutil.rmtree(output_dir / name, ignore_errors=True)
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


def callbacks(args: DetectorTrainingArguments) -> list[TrainerCallback]:
    if args.early_stopping_patience is None:
        return []
    logger.warning(
        "Early stopping on %s with patience %d: the kept checkpoint is chosen on the validation set, so the final "
        "validation metrics are slightly optimistic; judge the model on data it was not selected on",
        args.metric_for_best_model,
        args.early_stopping_patience,
    )
    return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]


def model_selection_summary(args: DetectorTrainingArguments, trainer: Any) -> dict[str, Any] | None:
    """For training_config.json: how the saved model was chosen (None: the last step's model)."""
    if not args.load_best_model_at_end:
        return None
    state = trainer.state
    return {
        "early_stopping_patience": args.early_stopping_patience,
        "metric": args.metric_for_best_model,
        "best_metric": state.best_metric,
        "best_checkpoint": state.best_model_checkpoint,
        "stopped_at_step": state.global_step,
        "max_steps": state.max_steps,
        "selected_on": "validation",
    }
