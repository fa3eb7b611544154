"""What the speed flags mean for the Trainer: defaults that are fast on a GPU, each of which can be turned off.

Dynamic padding (to a multiple of 8, for tensor cores) and length-grouped batches spend the compute on real
tokens instead of padding; fused AdamW, TF32, dataloader workers and pinned memory keep the GPU busy.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from chunking import ChunkCollator

MAX_AUTO_DATALOADER_WORKERS = 4


def resolve_optim(optim: str, on_gpu: bool) -> str:
    """`auto`: fused AdamW on a GPU (one kernel for all parameters), plain AdamW on CPU."""
    if optim != "auto":
        return optim
    return "adamw_torch_fused" if on_gpu else "adamw_torch"


def resolve_dataloader_workers(requested: int | None, on_gpu: bool) -> int:
    """Default: a few workers on a GPU so collation overlaps the step; none on CPU, where they compete with it."""
    if requested is not None:
        return requested
    return min(MAX_AUTO_DATALOADER_WORKERS, os.cpu_count() or 1) if on_gpu else 0


def trainer_speed_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainingArguments` keywords decided by the speed flags."""
    on_gpu = torch.cuda.is_available()
    workers = resolve_dataloader_workers(args.dataloader_num_workers, on_gpu)
    if workers:
        # The workers are forked after preparation used the tokenizer's thread pool; they never tokenise, and
        # saying so stops tokenizers from warning in each of them. Only now: preparation needs the pool (setting
        # this before it makes tokenisation single-threaded, 1.7x slower on 2 cores, far more on a GPU pod).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # TF32 exists from Ampere (compute capability 8) on; elsewhere leave torch's setting alone.
    tf32 = args.tf32 if on_gpu and torch.cuda.get_device_capability()[0] >= 8 else None
    return {
        "train_sampling_strategy": "group_by_length" if args.group_by_length else "random",
        "length_column_name": "length",
        "optim": resolve_optim(args.optim, on_gpu),
        "tf32": tf32,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,
        "dataloader_pin_memory": on_gpu and args.pin_memory,
        "torch_compile": args.torch_compile,
        # Encoder classifiers use every trainable parameter; searching for unused ones costs a graph walk per step.
        "ddp_find_unused_parameters": args.ddp_find_unused_parameters,
    }


def chunk_collator(tokenizer: PreTrainedTokenizerBase, args: argparse.Namespace) -> ChunkCollator:
    """Pads each batch to its longest chunk (rounded up to --pad_to_multiple_of), or always to --max_length."""
    if args.pad_to_max_length:
        return ChunkCollator(tokenizer, padding="max_length", max_length=args.max_length)
    return ChunkCollator(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of or None)
