"""Overlapping token windows: every document becomes one or more chunks of at most `max_length` tokens.

One batched pass of the fast tokenizer produces the windows (`return_overflowing_tokens` with `stride`), so
the chunks hold exactly the document's token sequence: nothing is decoded and tokenised again.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from datasets import Dataset, Features, List, Value
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from data_loaders import Document
from errors import UserError

DOCUMENT_COLUMNS = ("doc_id", "text", "label", "domain", "generator", "group_id")


def documents_to_dataset(documents: list[Document]) -> Dataset:
    """One row per document; `doc_id` travels with every chunk made from it."""
    return Dataset.from_dict({name: [getattr(doc, name) for doc in documents] for name in DOCUMENT_COLUMNS})


def column_array(dataset: Dataset, name: str) -> np.ndarray:
    """One column as a numpy array, read in one slice (indexing a `Column` element by element is slow)."""
    return np.asarray(dataset[name][:])


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the token ids: vocabulary, merges, normaliser, special tokens.

    The backend's truncation and padding settings are left out (each call changes them; they are restored).
    """
    backend = tokenizer.backend_tokenizer
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        state = backend.to_str()
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**padding)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{state}".encode()).hexdigest()


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
    cache_file_name: str | None = None,
) -> Dataset:
    """Tokenise documents into overlapping windows: columns input_ids, labels, doc_id, length.

    With `cache_file_name` the chunks are written there and memory-mapped instead of held in RAM.
    """
    check_window(tokenizer, max_length, overlap)
    # Naming the result ourselves spares `datasets` from pickling the tokenizer to hash the closure (seconds);
    # reuse of earlier results is data_cache's job (with a complete key), so datasets' own cache is off.
    fingerprint = hashlib.sha256(
        f"{documents._fingerprint}|{tokenizer_fingerprint(tokenizer)}|{max_length}|{overlap}".encode()
    ).hexdigest()[:16]

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        # Unpadded windows need no attention mask (all ones) or token type ids (all zeros): the collator
        # rebuilds both per batch, so storing them would only double the work and the disk.
        encoded = tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        owners = np.asarray(encoded["overflow_to_sample_mapping"])
        return {
            "input_ids": encoded["input_ids"],
            "doc_id": np.asarray(batch["doc_id"], dtype=np.int64)[owners],
            "labels": np.asarray(batch["label"], dtype=np.int64)[owners],
            "length": np.fromiter(map(len, encoded["input_ids"]), dtype=np.int32, count=len(owners)),
        }

    # A declared schema spares `datasets` from scanning every token list to infer one (a third of the time).
    features = Features(
        {
            "input_ids": List(Value("int32")),
            "doc_id": Value("int64"),
            "labels": Value("int64"),
            "length": Value("int32"),
        }
    )
    return documents.map(
        tokenize,
        batched=True,
        remove_columns=documents.column_names,
        num_proc=num_proc,
        desc=desc,
        cache_file_name=cache_file_name,
        load_from_cache_file=False,
        new_fingerprint=fingerprint,
        features=features,
    )


def document_token_counts(
    chunks: Dataset, tokenizer: PreTrainedTokenizerBase, overlap: int
) -> dict[int, tuple[int, int]]:
    """doc_id -> (tokens without special tokens, number of chunks), from the chunks' lengths."""
    doc_ids = column_array(chunks, "doc_id").astype(np.int64)
    content = column_array(chunks, "length").astype(np.int64) - tokenizer.num_special_tokens_to_add(pair=False)
    unique, inverse, n_chunks = np.unique(doc_ids, return_inverse=True, return_counts=True)
    tokens = np.bincount(inverse, weights=content).astype(np.int64) - overlap * (n_chunks - 1)
    return {int(d): (int(t), int(n)) for d, t, n in zip(unique, tokens, n_chunks)}


def label_counts(chunks: Dataset) -> dict[str, int]:
    counts = np.bincount(column_array(chunks, "labels").astype(np.int64), minlength=2)
    return {"human": int(counts[0]), "machine": int(counts[1])}


class ChunkCollator(DataCollatorWithPadding):
    """Pads a batch of chunks dynamically and passes on only what the model takes (plus `labels`).

    The datasets keep `doc_id` and `length` (used by the length-grouped sampler), so the Trainer runs with
    `remove_unused_columns=False` and this collator drops them.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keep = set(self.tokenizer.model_input_names) | {"labels"}
        return super().__call__([{k: v for k, v in f.items() if k in keep} for f in features])
