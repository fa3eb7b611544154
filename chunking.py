"""Overlapping token windows: every document becomes one or more chunks of at most `max_length` tokens.

One batched pass of the fast tokenizer produces the windows (`return_overflowing_tokens` with `stride`), so
the chunks hold exactly the document's token sequence: nothing is decoded and tokenised again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from data_loaders import Document
from errors import UserError

DOCUMENT_COLUMNS = ("doc_id", "text", "label", "domain", "generator", "group_id")


def documents_to_dataset(documents: list[Document]) -> Dataset:
    """One row per document; `doc_id` travels with every chunk made from it."""
    return Dataset.from_dict({name: [getattr(doc, name) for doc in documents] for name in DOCUMENT_COLUMNS})


def check_window(tokenizer: PreTrainedTokenizerBase, max_length: int, overlap: int) -> int:
    """Validate the window against the tokenizer and return the number of content tokens per window."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{type(tokenizer).__name__} is not a fast tokenizer; chunking needs one")
    content = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if content < 2:
        raise UserError(f"--max_length {max_length} leaves no room for text after the special tokens")
    if not 0 <= overlap < content:
        raise UserError(
            f"--chunk_overlap {overlap} must be at least 0 and below the {content} text tokens of a window "
            f"(--max_length {max_length} minus special tokens)"
        )
    return content


def chunk_documents(
    documents: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlap: int,
    num_proc: int | None = None,
    desc: str = "Chunking",
) -> Dataset:
    """Tokenise documents into overlapping windows: columns input_ids, attention_mask, labels, doc_id, length."""
    check_window(tokenizer, max_length, overlap)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        encoded = tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            stride=overlap,
            return_overflowing_tokens=True,
        )
        owners = encoded.pop("overflow_to_sample_mapping")
        encoded["doc_id"] = [batch["doc_id"][i] for i in owners]
        encoded["labels"] = [batch["label"][i] for i in owners]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return dict(encoded)

    return documents.map(
        tokenize,
        batched=True,
        remove_columns=documents.column_names,
        num_proc=num_proc,
        desc=desc,
    )


def document_token_counts(
    chunks: Dataset, tokenizer: PreTrainedTokenizerBase, overlap: int
) -> dict[int, tuple[int, int]]:
    """doc_id -> (tokens without special tokens, number of chunks), from the chunks' lengths."""
    doc_ids = np.asarray(chunks["doc_id"], dtype=np.int64)
    content = np.asarray(chunks["length"], dtype=np.int64) - tokenizer.num_special_tokens_to_add(pair=False)
    unique, inverse, n_chunks = np.unique(doc_ids, return_inverse=True, return_counts=True)
    tokens = np.bincount(inverse, weights=content).astype(np.int64) - overlap * (n_chunks - 1)
    return {int(d): (int(t), int(n)) for d, t, n in zip(unique, tokens, n_chunks)}


def label_counts(chunks: Dataset) -> dict[str, int]:
    counts = np.bincount(np.asarray(chunks["labels"], dtype=np.int64), minlength=2)
    return {"human": int(counts[0]), "machine": int(counts[1])}


class ChunkCollator(DataCollatorWithPadding):
    """Pads a batch of chunks dynamically and passes on only what the model takes (plus `labels`).

    The datasets keep `doc_id` and `length` (used by the length-grouped sampler), so the Trainer runs with
    `remove_unused_columns=False` and this collator drops them.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keep = set(self.tokenizer.model_input_names) | {"labels"}
        return super().__call__([{k: v for k, v in f.items() if k in keep} for f in features])
