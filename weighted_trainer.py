"""The class-weighted `Trainer`: cross-entropy with per-class weights, exact under gradient accumulation and DDP
(as its `compute_loss_func`, the Trainer passes the loss the accumulated batch's chunk count and rescales it for DDP).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from data_loaders import LABEL_NAMES
from m4_training.cli import EXIT_TRAINING, UserError

GLOO_WORKER_GRACE_S = 1.0  # far longer than a worker thread waits for the GIL, even on a busy machine


def compute_class_weights(labels: Sequence[int] | np.ndarray) -> dict[str, float]:
    """w_c = N / (2 * N_c) over the given (training chunk) labels, so the average weight per chunk is 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)[:2]
    if (counts == 0).any():
        present = "human" if counts[0] else "machine"
        raise UserError(f"the training split has only {present} chunks; a detector needs both classes")
    return {LABEL_NAMES[label]: float(weight) for label, weight in enumerate(counts.sum() / (2 * counts))}


def weighted_cross_entropy(
    outputs: Any,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum_i w[y_i] * CE_i over the chunk count of the whole accumulated batch (`num_items_in_batch`), not each
    micro-batch's weight sum: k accumulated micro-batches give exactly the gradient of one batch k times larger."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    weight = weight.to(logits.device) if weight is not None else None
    loss = F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())


class WeightedTrainer(Trainer):
    """`Trainer` with the class-weighted loss, a stop at the first non-finite loss and fast length grouping."""

    def __init__(self, *args: Any, class_weights: dict[str, float] | None = None, **kwargs: Any) -> None:
        weight = torch.tensor([class_weights["human"], class_weights["machine"]]) if class_weights else None
        super().__init__(*args, compute_loss_func=functools.partial(weighted_cross_entropy, weight=weight), **kwargs)

    # The Trainer hands the length-grouped sampler the dataset's lazy `length` Column, which the sampler reads
    # one item at a time when it sorts each epoch's mega-batches (about 14 s per 200k chunks, every epoch and
    # evaluation). No public option passes the lengths otherwise, so these two private hooks do (tested in
    # tests/test_speed_features.py, which fails loudly if transformers renames them).
    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler | None:
        return with_listed_lengths(super()._get_train_sampler(train_dataset))

    def _get_eval_sampler(self, eval_dataset: Any) -> Sampler | None:
        return with_listed_lengths(super()._get_eval_sampler(eval_dataset))

    def end(self) -> None:
        """The Trainer's end of a script (trackers finished, process group destroyed), safe under gloo: a gloo worker
        thread frees its last collective's tensors only once it holds the GIL; if the group is freed first, a finished
        run deadlocks or aborts (SIGABRT) and torchrun reports it failed, so the GIL is left free a moment before."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            time.sleep(GLOO_WORKER_GRACE_S)
        self.accelerator.end_training()

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """No Trainer-drafted README.md (drafted before every Hub upload): the card is reports.build_model_card's."""

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Stop at the first non-finite loss instead of training on NaN weights (the Trainer only hides it in logs)."""
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss):
            raise UserError(
                f"non-finite training loss ({loss.item()}) at step {self.state.global_step + 1} of "
                f"{self.state.max_steps} (epoch {self.state.epoch or 0:.2f}); lower --lr, use --precision bf16 or "
                "fp32 instead of fp16, or check the data",
                exit_code=EXIT_TRAINING,
            )
        return loss


def with_listed_lengths(sampler: Sampler | None) -> Sampler | None:
    """Give a length-grouped sampler its lengths as a list, read in one slice."""
    if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler.lengths, list):
        sampler.lengths = list(sampler.lengths[:])
    return sampler
