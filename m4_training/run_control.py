"""What makes a run safe to start, continue and stop: the --output_dir lock and guard (rules in
TRAINING_GUIDE_COMPLETE.md), checks made before any data is read, resume from the newest complete checkpoint, early
stopping, and the one line printed when a run is interrupted."""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from huggingface_hub import create_repo
from safetensors import SafetensorError, safe_open
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from m4_training import files, heldout
from m4_training.cli import EXIT_TRAINING, UserError, one_line
from m4_training.train_args import DetectorTrainingArguments, hub_repo_name

logger = logging.getLogger(__name__)

# Written when training ends (with heldout.PREDICTIONS_DIR); removed by --overwrite_output_dir so no stale result
# sits next to a new split.
RESULT_FILES = "metrics.json eval_predictions.jsonl training_config.json report.md confusion_matrix.png roc.png".split()
# "_": the Hub uploads (the Trainer's and ours) leave out `_*`, and each is made while the lock is held.
LOCK_FILE = "_train.lock"
# A checkpoint holds the weights once and AdamW's two moments: about three times the weights.
CHECKPOINT_TO_WEIGHTS = 3
WEIGHT_SUFFIXES = (".safetensors", ".bin")
BOOLEAN_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n", "1", "0"}


@contextlib.contextmanager
def lock_output_dir(output_dir: str | Path) -> Iterator[None]:
    """Create `--output_dir` if needed and hold its lock for this run; refuse at once when another run holds it.
    A run that died blocks nothing: the kernel releases a dead process's lock, so no PID is guessed to be alive."""
    path = Path(output_dir)
    files.check_output_dir(path, "--output_dir")  # a file in its place, or a directory this user cannot write
    created = [p for p in (path.absolute(), *path.absolute().parents) if not p.exists()]  # the leaf first
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output_dir {path} cannot be created ({error.strerror or error})") from error
    lock = FileLock(path / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"--output_dir {output_dir} is in use by another training run; wait for it to end or choose another "
            "--output_dir"
        ) from None
    except OSError as error:
        raise UserError(f"--output_dir {output_dir} is not writable ({error.strerror or error})") from error
    try:
        yield
    finally:
        # No lock file stays among the saved model's files. Removed while still held: filelock does not count a
        # lock taken on a file that is no longer linked, so no two runs ever hold one each.
        Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()
        for directory in created:  # a run stopped before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                directory.rmdir()


def weights_bytes(model: str) -> int | None:
    """Size of a local model directory's weight files (None for a hub id: not known before the download)."""
    directory = Path(model)
    if not directory.is_dir():
        return None
    return sum(p.stat().st_size for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def check_free_space(output_dir: str | Path, model_bytes: int, save_total_limit: int | None) -> None:
    """Stop before training when the disk cannot hold the checkpoints kept at once and the final model."""
    checkpoints = (save_total_limit or 1) + 1  # a new checkpoint is written before the oldest is removed
    needed = model_bytes * (checkpoints * CHECKPOINT_TO_WEIGHTS + 1)
    what = f"{checkpoints} checkpoints and the final model of this {files.format_bytes(model_bytes)} model"
    files.check_free_space(output_dir, needed, "--output_dir", what, ", lower --save_total_limit")


def create_hub_repository(args: DetectorTrainingArguments) -> None:
    """--push_to_hub: create the Hub repository (or find it) before any data is read, so that a token without write
    access, a repository name of someone else's or no network stops the run now rather than after preparing the
    data (the Trainer makes the same call later and finds it)."""
    name = hub_repo_name(args)
    try:
        create_repo(name, token=args.hub_token, private=args.hub_private_repo, exist_ok=True)
    except Exception as error:  # the hub client raises many types (HTTP, network, validation)
        raise UserError(
            f"--push_to_hub: cannot create or reach the Hub repository {name} ({one_line(error)}); check the "
            "token's write access and --hub_model_id, or leave out --push_to_hub"
        ) from error


def write_failure(error: BaseException, output_dir: str | Path) -> UserError | None:
    """The one-line error (exit 3) for a save that failed for want of room or rights; None for other errors."""
    message = files.write_failure(error, output_dir)
    if message is None:
        return None
    checkpoint, _ = newest_complete_checkpoint(output_dir)
    resume = f"; the newest complete checkpoint is {checkpoint}" if checkpoint else ""
    return UserError(message + resume, exit_code=EXIT_TRAINING)


def _unreadable(path: Path) -> str | None:
    """Why this weight or torch.save file cannot be loaded (None: it can): safetensors checks that its header's
    tensors fill the file; torch.save writes zip archives, and a truncated one has lost its directory at the end."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt"):
                return None
        with zipfile.ZipFile(path):
            return None
    except (SafetensorError, zipfile.BadZipFile, OSError):
        return f"{path.name} is truncated or damaged"


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why the Trainer could not resume from this checkpoint (None: complete). The Trainer writes trainer_state.json
    last, so a save cut short has none; files cut short otherwise are found by their own structure."""
    state = checkpoint / TRAINER_STATE_NAME
    if not state.is_file():
        return f"no {TRAINER_STATE_NAME}: its save did not finish"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{TRAINER_STATE_NAME} is truncated or unreadable"
    present = {p.name: p for p in checkpoint.iterdir() if p.is_file()}
    sharded = any(p.is_dir() and p.name.startswith(("pytorch_model_fsdp", "global_step")) for p in checkpoint.iterdir())
    weights = [p for name, p in present.items() if name.endswith(WEIGHT_SUFFIXES) and "model" in name]
    if not weights and not sharded:
        return "no model weights"
    for index in (p for name, p in present.items() if name.endswith(".index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return f"{index.name} is truncated or unreadable"
        if missing := sorted(shards - present.keys()):
            return f"missing weight files {', '.join(missing)}"
    torch_states = (OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME)
    saved_by_torch = [p for name, p in present.items() if name in torch_states or name.startswith("rng_state")]
    return next(filter(None, map(_unreadable, weights + saved_by_torch)), None)


def newest_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[str]]:
    """The complete checkpoint with the highest step, and each newer one passed over with the reason."""
    skipped = []
    for checkpoint in map(Path, reversed(sort_checkpoints(str(output_dir)))):
        if (problem := checkpoint_problem(checkpoint)) is None:
            return checkpoint, skipped
        skipped.append(f"{checkpoint.name} ({problem})")
    return None, skipped


def interrupted_message(output_dir: str | Path, argv: Sequence[str], signal_name: str) -> str:
    """One line for a run stopped by Ctrl-C or SIGTERM: the newest checkpoint and the command that resumes."""
    checkpoint, _ = newest_complete_checkpoint(output_dir)
    if checkpoint is None:
        return f"interrupted ({signal_name}) before the first checkpoint was saved; run the same command to start again"
    return (
        f"interrupted ({signal_name}); the newest complete checkpoint is {checkpoint}; resume with: "
        f"python train.py {shlex.join(resume_arguments(argv))}"
    )


def resume_arguments(argv: Sequence[str]) -> list[str]:
    """The same arguments without --overwrite_output_dir and any --resume_from_checkpoint, plus `auto`."""
    kept: list[str] = []
    position = 0
    while position < len(argv):
        token = argv[position]
        flag, has_value = token.split("=", 1)[0], "=" in token
        position += 1
        if flag == "--resume_from_checkpoint":
            position += 0 if has_value else 1
        elif flag == "--overwrite_output_dir":  # a switch that may be followed by true/false
            if not has_value and position < len(argv) and argv[position].lower() in BOOLEAN_WORDS:
                position += 1
        else:
            kept.append(token)
    return [*kept, "--resume_from_checkpoint", "auto"]


def guard_output_dir(args: DetectorTrainingArguments) -> None:
    """Refuse to overwrite a training run (a checkpoint or metrics.json) by accident, unless resuming it; with
    --overwrite_output_dir delete its checkpoints and results first (rank 0), so `auto` resume and checkpoint rotation
    never mix two runs. A dry run's outputs alone are not protected: re-running one is how settings are tried."""
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir() or args.resume_from_checkpoint:
        return
    checkpoints = [Path(checkpoint) for checkpoint in sort_checkpoints(str(output_dir))]
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
        shutil.rmtree(output_dir / heldout.PREDICTIONS_DIR, ignore_errors=True)
        logger.warning("--overwrite_output_dir: removed the previous run's checkpoints and results in %s", output_dir)


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`auto` -> the newest complete checkpoint-N in output_dir (newer incomplete ones are named and passed over);
    a path must be a complete Trainer checkpoint directory."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "auto":
        newest, skipped = newest_complete_checkpoint(output_dir)
        if skipped:
            logger.warning("--resume_from_checkpoint auto: passed over %s", "; ".join(skipped))
        if newest is None:
            complete, found = ("complete ", f"; incomplete: {'; '.join(skipped)}") if skipped else ("", "")
            raise UserError(
                f"--resume_from_checkpoint auto: no {complete}{PREFIX_CHECKPOINT_DIR}-N directory in {output_dir} "
                f"(checkpoints are saved every --eval_steps steps, or every epoch){found}"
            )
        logger.info("Resuming from %s", newest)
        return str(newest)
    path = Path(resume_from_checkpoint)
    if not (path / TRAINER_STATE_NAME).is_file() and not any(path.glob("*.safetensors")):
        raise UserError(
            f"--resume_from_checkpoint {path}: not a checkpoint directory (no {TRAINER_STATE_NAME}); "
            f"pass a {PREFIX_CHECKPOINT_DIR}-N directory or 'auto'"
        )
    if problem := checkpoint_problem(path):
        raise UserError(f"--resume_from_checkpoint {path}: cannot resume from it ({problem}); pass another or 'auto'")
    return str(path)


class HonourUmask(TrainerCallback):
    """Give the weight files of every checkpoint the permissions of the umask (safetensors writes them 0600)."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.should_save:
            files.apply_umask(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


def callbacks(args: DetectorTrainingArguments) -> list[TrainerCallback]:
    if args.early_stopping_patience is None:
        return [HonourUmask()]
    logger.warning(
        "Early stopping on %s with patience %d: the kept checkpoint is chosen on the validation set, so the final "
        "validation metrics are slightly optimistic; judge the model on data it was not selected on",
        args.metric_for_best_model,
        args.early_stopping_patience,
    )
    return [HonourUmask(), EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]


def model_selection_summary(args: DetectorTrainingArguments, trainer: Any) -> dict[str, Any] | None:
    """For training_config.json: how the saved model was chosen (None: the last step's model)."""
    if not args.load_best_model_at_end:
        return None
    return {
        "early_stopping_patience": args.early_stopping_patience,
        "metric": args.metric_for_best_model,
        "best_metric": trainer.state.best_metric,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "stopped_at_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "selected_on": "validation",
    }
