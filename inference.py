"""Chunk probabilities in dataset order.

Predictions are made with a sequential loader that this module owns, never with `Trainer.predict`: with
length-grouped sampling transformers 5 also reorders the evaluation sampler, and positions would no
longer match documents.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from chunking import ChunkCollator, column_array


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 on GPUs that support it, else fp16 on a GPU; fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision))


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_chunk_probs(
    model: PreTrainedModel,
    chunks: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """P(machine) for every chunk, in the dataset's order.

    Chunks are run longest first so that batches hold similar lengths (little padding), and the results
    are put back into the dataset's order before they are returned.
    """
    lengths = column_array(chunks, "length") if "length" in chunks.column_names else np.zeros(len(chunks))
    order = np.argsort(-lengths, kind="stable")
    collator = ChunkCollator(tokenizer, pad_to_multiple_of=8)
    loader = DataLoader(
        chunks.select(order).with_format("python"),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collator,
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = []
    for batch in tqdm(loader, desc="Predicting", disable=not show_progress, leave=False):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
        with autocast_context(device, autocast_dtype):
            logits = model(**batch).logits
        probs.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    model.train(was_training)
    in_dataset_order = np.zeros(len(chunks))
    in_dataset_order[order] = np.concatenate(probs) if probs else []
    return in_dataset_order
