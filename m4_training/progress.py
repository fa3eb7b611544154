"""What a training run shows while it trains: the plan before it starts (training chunks and optimizer steps),
the projected time once the first steps are logged, and the Trainer's progress bar and log lines.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import has_length

# An evaluation of fewer batches than this is over before a bar would tell anything.
SHOW_EVALUATION_BAR_FROM_BATCHES = 20


def optimizer_steps(n_chunks: int, args: TrainingArguments) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) of a run on `n_chunks` training chunks, as the Trainer counts
    them: a last, partial gradient accumulation also counts, and `--max_steps`, when set, replaces the epochs."""
    batches_per_process = math.ceil(math.ceil(n_chunks / args.per_device_train_batch_size) / args.world_size)
    per_epoch = max(math.ceil(batches_per_process / args.gradient_accumulation_steps), 1)
    total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * per_epoch)
    return per_epoch, total


def format_training_plan(n_chunks: int, args: TrainingArguments) -> str:
    """One line: the training chunks, the global batch and the optimizer steps they make."""
    per_epoch, total = optimizer_steps(n_chunks, args)
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    plan = f"Training plan: {n_chunks} training chunks, global batch {global_batch} -> {per_epoch} optimizer steps"
    if args.max_steps > 0:
        return f"{plan} per epoch; --max_steps {total} ({total / per_epoch:.3g} epochs)"
    return f"{plan} per epoch x {args.num_train_epochs:g} epochs = {total} steps"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class TrainingProgress(ProgressCallback):
    """The Trainer's progress bar and log lines with three changes: numbers unquoted (transformers writes every
    logged value as a quoted string, `'loss': '0.4297'`), the projected training time after the first logged
    steps, and no bar for an evaluation too short to need one. `--disable_tqdm` keeps the lines, without bars."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:  # the Trainer's bar, which has no switch to hide it
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, disable=args.disable_tqdm)
        self.current_step = 0
        self.started, self.first_step, self.projected = time.monotonic(), state.global_step, False  # resumed: > 0

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        batches = kwargs.get("eval_dataloader")
        if not args.disable_tqdm and has_length(batches) and len(batches) >= SHOW_EVALUATION_BAR_FROM_BATCHES:
            super().on_prediction_step(args, state, control, **kwargs)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs")
        if not state.is_world_process_zero or not logs or self.training_bar is None:
            return  # after training: the final numbers logged for the trackers, printed as the summary tables
        values = "  ".join(
            f"{name} {f'{value:.4g}' if isinstance(value, float) else value}"
            for name, value in logs.items()
            if name != "total_flos"
        )
        tqdm.write(f"step {state.global_step}/{state.max_steps}  {values}")  # above the bar
        steps_done = state.global_step - self.first_step
        if not self.projected and "loss" in logs and steps_done > 0:
            self.projected = True
            per_step = (time.monotonic() - self.started) / steps_done
            remaining = per_step * (state.max_steps - state.global_step)
            tqdm.write(
                f"Projected: {state.max_steps - state.global_step} more steps at {per_step:.2g} s/step (measured "
                f"over the first {steps_done}) = about {format_duration(remaining)} of training, evaluations not "
                "included"
            )
        sys.stdout.flush()  # each line as it comes, also into a log file


def use_training_progress(trainer: Trainer) -> None:
    """Replace the Trainer's default progress (or printer) callback with `TrainingProgress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress())
