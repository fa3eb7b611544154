"""Scoring documents with a trained detector: chunk probabilities in dataset order, aggregated per document.

The one scoring path of the end-of-training evaluation, predict.py and the page. Predictions are made with a
sequential loader this module owns, never with `Trainer.predict`: with length-grouped sampling transformers 5
also reorders the evaluation sampler, and positions would no longer match documents. Chunks are matched to
documents by `doc_id`, never by position.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

import chunking
from m4_training import modeling
from m4_training.cli import UserError, one_line
from m4_training.config import resolve_precision
from m4_training.evaluation import aggregate_documents

SHOW_PROGRESS_FROM_CHUNKS = 512


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_chunk_probs(
    model: PreTrainedModel,
    chunks: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    dtype: torch.dtype | None = None,
    show_progress: bool | None = None,
) -> np.ndarray:
    """P(machine) for every chunk, in the dataset's order.

    Chunks are run longest first so that batches hold similar lengths (little padding), and the results
    are put back into the dataset's order before they are returned.
    """
    lengths = chunking.column_array(chunks, "length") if "length" in chunks.column_names else np.zeros(len(chunks))
    order = np.argsort(-lengths, kind="stable")
    loader = DataLoader(
        chunks.select(order).with_format("python"),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=chunking.ChunkCollator(tokenizer, pad_to_multiple_of=8),
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    in_dataset_order = np.zeros(len(chunks))
    done = 0
    show = len(chunks) >= SHOW_PROGRESS_FROM_CHUNKS if show_progress is None else show_progress
    for batch in tqdm(loader, desc="Predicting", disable=not show, leave=False):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
        with _autocast(device, dtype):
            logits = model(**batch).logits
        probs = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
        # Copied out at once: keeping every batch's small array (a view of its tensor) alive fragments the
        # heap, about 5 KB per chunk of peak memory (+0.5 GB for one 48 MB document).
        in_dataset_order[order[done : done + len(probs)]] = probs
        done += len(probs)
    model.train(was_training)
    return in_dataset_order


def score_chunks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    chunks: Dataset,
    documents: pd.DataFrame,
    batch_size: int,
    dtype: torch.dtype | None,
    aggregate: str = "mean",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Per document (a row of `documents` with its `doc_id`): `prob_machine` and `n_chunks`; plus chunk probs."""
    probs = predict_chunk_probs(model, chunks, tokenizer, batch_size, dtype)
    doc_ids = chunking.column_array(chunks, "doc_id")
    return aggregate_documents(doc_ids, probs, documents, how=aggregate), probs


def score_texts(
    texts: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlap: int,
    batch_size: int = 64,
    dtype: torch.dtype | None = None,
    aggregate: str = "mean",
    num_proc: int | None = None,
) -> tuple[pd.DataFrame, Dataset, np.ndarray]:
    """Chunk normalised texts and score them: per text (in order) `prob_machine` and `n_chunks`; the chunks
    (with their `doc_id` = position of the text) and each chunk's probability."""
    chunks = chunking.chunk_documents(chunking.text_dataset(list(texts)), tokenizer, max_length, overlap, num_proc)
    frame = pd.DataFrame({"doc_id": np.arange(len(texts))})
    scored, probs = score_chunks(model, tokenizer, chunks, frame, batch_size, dtype, aggregate)
    return scored, chunks, probs


@dataclass
class Detector:
    """A trained detector and the settings it was trained with, which scoring must repeat.

    The weights are loaded when first used, so bad input is reported before that cost.
    """

    path: Path
    tokenizer: PreTrainedTokenizerBase
    normalize_digits: bool
    max_length: int
    chunk_overlap: int
    threshold: float
    target_fpr: float | None
    domains: list[str] | None
    generators: list[str] | None

    def score(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        dtype: torch.dtype | None = None,
        aggregate: str = "mean",
        num_proc: int | None = None,
    ) -> tuple[pd.DataFrame, Dataset, np.ndarray]:
        """`score_texts` with this detector's model, tokenizer and window (texts already normalised)."""
        return score_texts(
            texts,
            self.model,
            self.tokenizer,
            self.max_length,
            self.chunk_overlap,
            batch_size,
            dtype,
            aggregate,
            num_proc,
        )

    @cached_property
    def model(self) -> PreTrainedModel:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(self.path)
        except Exception as error:  # missing or corrupt weights raise many types
            raise UserError(f"could not load the model in {self.path}: {one_line(error)}") from error
        return model.to("cuda" if torch.cuda.is_available() else "cpu")


def load_detector(model_path: str | Path) -> Detector:
    """The model directory written by train.py: tokenizer, training_config.json and (when used) the weights."""
    model_path = Path(model_path)
    if not model_path.is_dir():
        raise UserError(f"model directory not found: {model_path}")
    path = model_path / "training_config.json"
    if not path.is_file():
        raise UserError(f"{model_path} has no training_config.json; predict.py needs a directory written by train.py")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        data = config.get("arguments", {}).get("data", {})
        settings = {
            "normalize_digits": bool(config["normalization"]["normalize_digits"]),
            "max_length": int(config["chunking"]["max_length"]),
            "chunk_overlap": int(config["chunking"]["chunk_overlap"]),
            "threshold": float(config["threshold"]),
            "target_fpr": config.get("target_fpr"),
            "domains": data.get("train_domains"),
            "generators": data.get("train_generators"),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path}: unreadable or incomplete training config ({error!r})") from error
    return Detector(model_path, modeling.load_tokenizer(str(model_path)), **settings)
