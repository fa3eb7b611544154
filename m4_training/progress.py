"""What a training run shows while it trains: the plan before it starts (training chunks and optimizer steps),
the projected time once the first steps are logged, and the Trainer's log lines with numbers as numbers.

transformers' own progress callback writes every logged value as a quoted string (`'loss': '0.4297'`) and opens
a progress bar for every evaluation, however small; `TrainingProgress` takes its place.
"""

from __future__ import annotations

import math
import time
from typing import Any

from transformers import (
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import has_length

# An evaluation of fewer batches than this is over before a bar would tell anything.
SHOW_EVALUATION_BAR_FROM_BATCHES = 20


def optimizer_steps(n_chunks: int, args: TrainingArguments) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) of a run on `n_chunks` training chunks.

    The same arithmetic as the Trainer's: each process takes batches of the per-device size, an optimizer step
    takes `gradient_accumulation_steps` of them (a last, partial accumulation also counts), and `--max_steps`,
    when set, replaces the epochs.
    """
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


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_log(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """A Trainer log entry as one line of `name value` pairs, numbers unquoted."""
    values = "  ".join(f"{name} {format_value(value)}" for name, value in logs.items() if name != "total_flos")
    return f"step {step}/{max_steps}  {values}"


class TrainingProgress(ProgressCallback):
    """The training bar, log lines with plain numbers, a projected time after the first logged training steps,
    and evaluation bars only for evaluations long enough to need one."""

    def __init__(self) -> None:
        super().__init__()
        # Set again when training begins; these serve a `Trainer.evaluate` run without training.
        self.started, self.first_step, self.projected, self.trained = time.monotonic(), 0, False, False

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step  # above 0 when resuming
        self.projected = False
        self.trained = False
        if args.disable_tqdm:
            self.training_bar, self.current_step = None, 0
        else:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        eval_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if self.training_bar is None or not has_length(eval_dataloader):
            return
        if len(eval_dataloader) < SHOW_EVALUATION_BAR_FROM_BATCHES:
            return
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs or self.trained:
            return  # after training: the final numbers logged for the trackers, printed as the summary tables
        self.write(format_log(logs, state.global_step, state.max_steps))
        steps_done = state.global_step - self.first_step
        if not self.projected and "loss" in logs and steps_done > 0:
            self.projected = True
            per_step = (time.monotonic() - self.started) / steps_done
            remaining = per_step * (state.max_steps - state.global_step)
            self.write(
                f"Projected: {state.max_steps - state.global_step} more steps at {per_step:.2g} s/step (measured "
                f"over the first {steps_done}) = about {format_duration(remaining)} of training, evaluations not "
                "included"
            )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.trained = True
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def write(self, line: str) -> None:
        if self.training_bar is not None:
            self.training_bar.write(line)  # above the bar, which stays at the bottom
        else:
            print(line, flush=True)


def use_training_progress(trainer: Trainer) -> None:
    """Replace the Trainer's default progress (or printer) callback with `TrainingProgress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress())
