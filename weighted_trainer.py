"""The class-weighted `Trainer`: cross-entropy with per-class weights, exact under gradient accumulation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from errors import UserError


def compute_class_weights(labels: Sequence[int] | np.ndarray) -> dict[str, float]:
    """w_c = N / (2 * N_c) over the given (training chunk) labels, so the average weight per chunk is 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)[:2]
    if (counts == 0).any():
        present = "human" if counts[0] else "machine"
        raise UserError(f"the training split has only {present} chunks; a detector needs both classes")
    total = counts.sum()
    return {"human": float(total / (2 * counts[0])), "machine": float(total / (2 * counts[1]))}


class WeightedTrainer(Trainer):
    """`Trainer` whose loss is sum_i w[y_i] * CE_i divided by the number of labelled chunks.

    Dividing by the chunk count of the whole accumulated batch (`num_items_in_batch`, which the Trainer
    counts across accumulation steps and devices) rather than by each micro-batch's weight sum makes k
    accumulated micro-batches give exactly the loss and gradient of one batch k times larger.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, class_weights: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_weights = (
            torch.tensor([class_weights["human"], class_weights["machine"]], dtype=torch.float32)
            if class_weights
            else None
        )
        # Makes the Trainer count the labelled items of each accumulated batch for us.
        self.model_accepts_loss_kwargs = True

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        loss = F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum")
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch is the global count while DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss
