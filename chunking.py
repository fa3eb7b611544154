"""Overlapping token windows: every document becomes one or more chunks of at most `max_length` tokens.

Each document is tokenised once, in batches, by the fast tokenizer's backend; the windows are cut from those token
ids with numpy: nothing is tokenised again and no token passes through Python one at a time. Not the tokenizer's
own `return_overflowing_tokens=True` with `stride`: the same windows, but 1.46x the time on 20x the shared sample,
and no long text in pieces (one 48 MB document: 130-170x its size in memory, against 8x here); BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import datasets
import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, List, Value
from datasets.table import InMemoryTable
from tokenizers import Encoding, Tokenizer
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from data_loaders import Document, text_pieces
from m4_training.cli import UserError

# A text longer than this is encoded in pieces of about this many characters, cut before a space (the backend's
# encoding of a whole text holds a string, offsets and more per token: gigabytes for one 48 MB document). Each piece
# starts with the space before its first word, as in the whole text: the same ids for BPE, WordPiece, SentencePiece.
LONG_TEXT_PIECE_CHARS = 100_000
PIECES_PER_CALL = 16
TEXT_SCHEMA = pa.schema([("doc_id", pa.int64()), ("text", pa.string()), ("label", pa.int64())])
TEXT_BATCH = 1000
# Below this many documents chunking takes a blink and a progress bar is only noise.
SHOW_PROGRESS_FROM_DOCUMENTS = 1000
# Declared, so that `datasets` need not scan every token list to infer the schema.
CHUNK_FEATURES = Features(
    {"input_ids": List(Value("int32")), "doc_id": Value("int64"), "labels": Value("int64"), "length": Value("int32")}
)


def text_dataset(
    texts: Sequence[str], doc_ids: Sequence[int] | None = None, labels: Sequence[int] | None = None
) -> Dataset:
    """The input of `chunk_documents`: columns doc_id (default: position), text, label (default: 0).

    The table gets a fingerprint of its own: else `datasets` would pickle it to make one, tripling the peak memory
    of a large corpus (nothing is cached under it: that is data_cache's job). The texts are encoded to UTF-8 here:
    handed to Arrow as `str`, a non-ASCII text keeps the UTF-8 copy CPython caches for as long as it lives.
    """
    doc_ids = np.arange(len(texts)) if doc_ids is None else np.asarray(doc_ids, dtype=np.int64)
    labels = np.zeros(len(texts), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    encoded = (
        pa.array([text.encode("utf-8") for text in texts[begin : begin + TEXT_BATCH]], pa.binary()).cast(pa.string())
        for begin in range(0, len(texts), TEXT_BATCH)
    )
    table = pa.table([doc_ids, pa.chunked_array(encoded, pa.string()), labels], schema=TEXT_SCHEMA)
    return Dataset(InMemoryTable(table), fingerprint=uuid.uuid4().hex)


def documents_to_dataset(documents: list[Document]) -> Dataset:
    """One row per document; `doc_id` travels with every chunk made from it."""
    return text_dataset(
        [doc.text for doc in documents], [doc.doc_id for doc in documents], [doc.label for doc in documents]
    )


def column_array(dataset: Dataset, name: str) -> np.ndarray:
    """One column as a numpy array, read in one slice (indexing a `Column` element by element is slow)."""
    return np.asarray(dataset[name][:])


def plain_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    """The fast tokenizer's backend without truncation or padding (transformers leaves both set on the shared
    backend after a call that asks for them; then a copy without them is used: the caller's stays as it is)."""
    backend = tokenizer.backend_tokenizer
    if backend.truncation is None and backend.padding is None:
        return backend
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the token ids: vocabulary, merges, normaliser, special tokens. Truncation
    and padding (transformers changes them per call) are off while serialising, then put back: rebuilding the
    backend without them, as plain_backend does, would take 7x as long on every run, a cached one too."""
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


def encode_long_text(backend: Tokenizer, text: str) -> np.ndarray:
    """The token ids of a long text (no special tokens), encoded a few pieces at a time."""
    parts, pieces = [], text_pieces(text, LONG_TEXT_PIECE_CHARS)
    while batch := list(itertools.islice(pieces, PIECES_PER_CALL)):
        encodings = backend.encode_batch_fast(batch, add_special_tokens=False)
        parts.extend(np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)


def encode_texts(backend: Tokenizer, texts: list[str]) -> list[Sequence[int]]:
    """Each text's token ids without special tokens: short texts in one batch call, long ones piece by piece."""
    short = [i for i, text in enumerate(texts) if len(text) <= LONG_TEXT_PIECE_CHARS]
    encodings = backend.encode_batch_fast([texts[i] for i in short], add_special_tokens=False)
    ids = {i: encoding.ids for i, encoding in zip(short, encodings)}
    del encodings  # the encodings hold far more than the ids; gone before any long text is encoded
    return [ids[i] if i in ids else encode_long_text(backend, text) for i, text in enumerate(texts)]


class WindowSpec(NamedTuple):
    """How a document's tokens become windows: `content` text tokens each, between fixed special tokens."""

    content: int
    overlap: int
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


def check_window(tokenizer: PreTrainedTokenizerBase, max_length: int, overlap: int) -> int:
    """Validate the window against the tokenizer and return the number of text tokens per window."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{type(tokenizer).__name__} is not a fast tokenizer; chunking needs one")
    if tokenizer.model_max_length < 1_000_000 and max_length > tokenizer.model_max_length:
        raise UserError(f"--max_length {max_length} exceeds the tokenizer's limit {tokenizer.model_max_length}")
    content = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if content < 2:
        raise UserError(f"--max_length {max_length} leaves no room for text after the special tokens")
    if not 0 <= overlap < content:
        raise UserError(
            f"--chunk_overlap {overlap} must be at least 0 and below the {content} text tokens of a window "
            f"(--max_length {max_length} minus special tokens)"
        )
    return content


def window_spec(tokenizer: PreTrainedTokenizerBase, max_length: int, overlap: int) -> WindowSpec:
    """The window for this tokenizer, with the special tokens it puts before and after a single text."""
    content = check_window(tokenizer, max_length, overlap)
    wrapped = tokenizer("hello")["input_ids"]
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    starts = [i for i in range(len(wrapped) - len(bare) + 1) if wrapped[i : i + len(bare)] == bare]
    if not bare or not starts or len(wrapped) - len(bare) != tokenizer.num_special_tokens_to_add(pair=False):
        raise UserError(f"{type(tokenizer).__name__} does not wrap a text in fixed special tokens; chunking needs one")
    prefix, suffix = wrapped[: starts[0]], wrapped[starts[0] + len(bare) :]
    return WindowSpec(content, overlap, tuple(prefix), tuple(suffix))


def _window_layout(lengths: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For documents of `lengths` tokens: each window's document, first token and number of text tokens (windows
    advance by `content - overlap`; a document not longer than `content`, even an empty one, gets one)."""
    step = spec.content - spec.overlap
    n_windows = 1 + np.maximum(0, -(-(lengths - spec.content) // step))
    owners = np.repeat(np.arange(len(lengths)), n_windows)
    index_in_doc = np.arange(len(owners)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    window_starts = index_in_doc * step
    return owners, window_starts, np.minimum(spec.content, lengths[owners] - window_starts)


def window_token_ranges(n_tokens: int, spec: WindowSpec) -> np.ndarray:
    """[start, end) of each window of one document of `n_tokens` text tokens: the windows `chunk_documents` makes
    (the same arithmetic as `window_token_ids`)."""
    _, starts, content_lengths = _window_layout(np.array([n_tokens], dtype=np.int64), spec)
    return np.stack([starts, starts + content_lengths], axis=1)


def encode_with_offsets(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Encoding]:
    """The texts' tokens as `chunk_documents` tokenises them (no special tokens), with character offsets."""
    return plain_backend(tokenizer).encode_batch(list(texts), add_special_tokens=False)


def window_token_ids(token_ids: Sequence[Sequence[int]], spec: WindowSpec) -> tuple[pa.ListArray, np.ndarray]:
    """Cut each document's tokens into windows; returns the windows and the index of each window's document.

    Consecutive windows of a document share exactly `overlap` tokens and only the last is shorter; a document
    without tokens gets one window of special tokens. Index arithmetic over one flat array: no per-token Python.
    """
    lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
    tokens = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int32, count=int(lengths.sum()))
    doc_starts = np.cumsum(lengths) - lengths
    owners, window_starts, content_lengths = _window_layout(lengths, spec)

    n_prefix, n_suffix = len(spec.prefix), len(spec.suffix)
    offsets = np.zeros(len(owners) + 1, dtype=np.int32)
    np.cumsum(content_lengths + n_prefix + n_suffix, out=offsets[1:])
    windows = np.empty(int(offsets[-1]), dtype=np.int32)
    # Position k of the content copied into all windows, back to back, comes from the document's token
    # (k - first k of its window) + window start, and goes after the window's prefix.
    content_before = np.cumsum(content_lengths) - content_lengths
    # int32 like the offsets, and added in place: these index arrays are the peak memory of one huge document.
    position = np.arange(int(content_lengths.sum()), dtype=np.int32)
    source = np.repeat((doc_starts[owners] + window_starts - content_before).astype(np.int32), content_lengths)
    source += position
    target = np.repeat((offsets[:-1] + n_prefix - content_before).astype(np.int32), content_lengths)
    target += position
    del position
    windows[target] = tokens[source]
    for i, token in enumerate(spec.prefix):
        windows[offsets[:-1] + i] = token
    for i, token in enumerate(spec.suffix):
        windows[offsets[1:] - n_suffix + i] = token
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(windows)), owners


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """`datasets` progress bars off for the block unless `show` (and left as they were afterwards)."""
    hide = not show and not datasets.are_progress_bars_disabled()
    if hide:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            datasets.enable_progress_bars()


def chunk_documents(
    documents: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlap: int,
    num_proc: int | None = None,
    desc: str = "Chunking",
    cache_file_name: str | None = None,
) -> Dataset:
    """Tokenise documents into overlapping windows: columns input_ids, labels, doc_id, length (written to
    `cache_file_name` and memory-mapped, if given, instead of held in RAM)."""
    spec = window_spec(tokenizer, max_length, overlap)
    backend = plain_backend(tokenizer)

    def tokenize(batch: pa.Table) -> pa.Table:
        # The Rust backend directly, without offsets: the fastest single pass it offers.
        windows, owners = window_token_ids(encode_texts(backend, batch.column("text").to_pylist()), spec)
        # Unpadded windows need no attention mask (all ones) or token type ids (all zeros): the collator
        # rebuilds both per batch, so storing them would only double the work and the disk.
        return pa.table(
            {
                "input_ids": windows,
                "doc_id": batch.column("doc_id").to_numpy().astype(np.int64)[owners],
                "labels": batch.column("label").to_numpy().astype(np.int64)[owners],
                "length": np.diff(windows.offsets.to_numpy()).astype(np.int32),
            }
        )

    # Arrow in and out: the texts are read and the windows written without converting tokens to Python.
    with progress_bars(len(documents) >= SHOW_PROGRESS_FROM_DOCUMENTS):
        chunks = documents.with_format("arrow").map(
            tokenize,
            batched=True,
            remove_columns=documents.column_names,
            num_proc=num_proc,
            desc=desc,
            cache_file_name=cache_file_name,
            load_from_cache_file=False,
            # Naming the result spares `datasets` from pickling the tokenizer to hash the closure (seconds).
            new_fingerprint=uuid.uuid4().hex,
            features=CHUNK_FEATURES,
        )
    return chunks.with_format(None)


def document_token_counts(
    chunks: Dataset, tokenizer: PreTrainedTokenizerBase, overlap: int
) -> dict[int, tuple[int, int]]:
    """doc_id -> (tokens without special tokens, number of chunks), from the chunks' lengths."""
    doc_ids = column_array(chunks, "doc_id").astype(np.int64)
    content = column_array(chunks, "length").astype(np.int64) - tokenizer.num_special_tokens_to_add(pair=False)
    unique, inverse, n_chunks = np.unique(doc_ids, return_inverse=True, return_counts=True)
    tokens = np.bincount(inverse, weights=content).astype(np.int64) - overlap * (n_chunks - 1)
    return dict(zip(unique.tolist(), zip(tokens.tolist(), n_chunks.tolist())))


def label_counts(chunks: Dataset) -> dict[str, int]:
    counts = np.bincount(column_array(chunks, "labels").astype(np.int64), minlength=2)
    return {"human": int(counts[0]), "machine": int(counts[1])}


class ChunkCollator(DataCollatorWithPadding):
    """Pads a batch of chunks and passes on only what the model takes (plus `labels`): the Trainer runs with
    `remove_unused_columns=False` to keep `doc_id` and `length` (for the length-grouped sampler)."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keep = set(self.tokenizer.model_input_names) | {"labels"}
        return super().__call__([{k: v for k, v in f.items() if k in keep} for f in features])


def chunk_collator(
    tokenizer: PreTrainedTokenizerBase, max_length: int, pad_to_multiple_of: int, pad_to_max_length: bool
) -> ChunkCollator:
    """Pads each batch to its longest chunk (rounded up to `pad_to_multiple_of`), or always to `max_length`."""
    if pad_to_max_length:
        return ChunkCollator(tokenizer, padding="max_length", max_length=max_length)
    return ChunkCollator(tokenizer, pad_to_multiple_of=pad_to_multiple_of or None)
