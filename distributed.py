"""The same train.py under `torchrun` and `accelerate launch`: who goes first, who writes, what to evaluate.

The launchers set RANK / WORLD_SIZE; the process group itself is accelerate's (`PartialState`), the one the
Trainer uses too, so DDP, FSDP and DeepSpeed all come from an accelerate config and no code here launches
anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

# TrainingArguments' default `ddp_timeout`: the longest the other ranks wait for the main one's preparation.
PROCESS_GROUP_TIMEOUT = timedelta(seconds=1800)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of the whole job: the one process that writes reports and prints summaries."""
    return int(os.environ.get("RANK", "0")) == 0


def cpu_only() -> bool:
    """Distributed on CPU (gloo): the Trainer must be told, or every process trains on its own."""
    return world_size() > 1 and not torch.cuda.is_available()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (writing demo inputs, reports and any cache), then the others run it.

    The block is deterministic, so the others arrive at the same data (reading the cache where there is one).
    """
    if world_size() == 1:
        yield
        return
    from accelerate import PartialState

    state = PartialState(cpu=cpu_only(), timeout=PROCESS_GROUP_TIMEOUT)
    with state.main_process_first():
        yield


def batch_sizes(args: Any) -> dict[str, int]:
    """Per-device size, accumulation steps and process count behind one optimizer step (TrainingArguments)."""
    return {
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
    }


def log_batch_size(args: Any) -> None:
    sizes = batch_sizes(args)
    logger.info(
        "Global batch size %d = %d per device x %d accumulation steps x %d processes",
        sizes["global_batch_size"],
        sizes["per_device_batch_size"],
        sizes["gradient_accumulation_steps"],
        sizes["world_size"],
    )


def model_for_evaluation(trainer: Any, output_dir: str | Path) -> torch.nn.Module:
    """The trained model as one plain module on rank 0, for the sequential document evaluation.

    Under DDP that is the Trainer's own model. Under FSDP or DeepSpeed the parameters are sharded across the
    processes, so a forward pass on rank 0 alone would wait for the others forever; rank 0 instead reloads
    the full model that `save_model` has just gathered into `output_dir` (needs FULL_STATE_DICT for FSDP,
    see configs/accelerate_fsdp.yaml).
    """
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        return trainer.model
    from transformers import AutoModelForSequenceClassification

    from errors import UserError

    try:
        model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    except OSError as error:
        raise UserError(
            f"the sharded run saved no full model in {output_dir} to evaluate ({error}); set "
            "fsdp_state_dict_type: FULL_STATE_DICT (FSDP) or stage3_gather_16bit_weights_on_model_save (DeepSpeed)"
        ) from error
    return model.to(trainer.args.device)
