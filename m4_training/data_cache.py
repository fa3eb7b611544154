"""Prepared data (loaded, de-duplicated, split and chunked) cached on disk, so a second run skips preparation.

An entry is keyed by everything that decides its contents: the bytes of every input file (and the paths as
given, because reports quote them), the tokenizer's vocabulary and rules, the chunk window, normalisation,
every split and sampling setting, and the source of the code that prepares the data. Any change gives a new
key, so a stale entry is never read. An entry holds the corpus and split (pickled) and the chunk datasets as
Arrow files, which are memory-mapped on load rather than read into RAM. Entries are built in a temporary
directory and renamed into place, so concurrent runs (several ranks, two jobs) never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

import chunking
import data_loaders
from data_loaders import Corpus
from m4_training import cyclic_gc, splits
from m4_training.config import TrainConfig, preparation_settings
from m4_training.splits import Split

logger = logging.getLogger(__name__)

# Bump when the layout of an entry changes.
CACHE_FORMAT = 2
# The code whose behaviour decides an entry's contents.
CODE_FILES = ("data_loaders.py", "chunking.py", "m4_training/splits.py", "m4_training/data_cache.py")
ROOT = Path(__file__).resolve().parents[1]
COMPLETE_MARKER = "complete.json"
CORPUS_FILE = "corpus_and_split.pkl"
SIDES = ("train", "val")


@dataclass
class PreparedChunks:
    corpus: Corpus
    split: Split
    train_chunks: Dataset
    val_chunks: Dataset


def input_files(config: TrainConfig) -> list[Path]:
    """The files a preparation with these settings reads (the same selection load_corpus makes)."""
    data = config.data
    found = data_loaders.find_m4_files(Path(data.data_dir), data.train_domains, data.train_generators)
    return [path for path, _, _ in found] + ([Path(data.reddit_file)] if data.reddit_file else [])


def file_digest(path: Path) -> str | None:
    """blake2b of the file's bytes; None for a missing file (preparation then reports it)."""
    if not path.is_file():
        return None
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_digest() -> str:
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def cache_key(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    files = [
        {"path": str(path), "resolved": str(path.resolve()), "blake2b": file_digest(path)}
        for path in input_files(config)
    ]
    parts = {
        "format": CACHE_FORMAT,
        "settings": preparation_settings(config),
        "files": files,
        "tokenizer": chunking.tokenizer_fingerprint(tokenizer),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def build(config: TrainConfig, tokenizer: PreTrainedTokenizerBase, chunk_dir: Path | None = None) -> PreparedChunks:
    """Load, de-duplicate, split and chunk. With `chunk_dir` the chunks are written there as Arrow files."""
    data, split_args, window = config.data, config.split, config.chunking
    corpus = data_loaders.load_corpus(
        data.data_dir, data.train_domains, data.train_generators, data.reddit_file, data.normalize_digits
    )
    split = splits.split_corpus(
        corpus,
        split_args.stratified_split,
        split_args.validation_split,
        split_args.val_generator,
        split_args.reddit_val_fraction,
        config.training.seed,
        data.max_train_samples,
        data.max_val_samples,
    )
    train_chunks, val_chunks = (
        chunking.chunk_documents(
            chunking.documents_to_dataset(docs),
            tokenizer,
            window.max_length,
            window.chunk_overlap,
            data.num_proc,
            desc=f"Chunking {side}",
            cache_file_name=str(chunk_dir / f"{side}.arrow") if chunk_dir else None,
        )
        for side, docs in zip(SIDES, (split.train, split.val))
    )
    return PreparedChunks(corpus, split, train_chunks, val_chunks)


def _write_entry(entry: Path, config: TrainConfig, tokenizer: Any) -> PreparedChunks:
    """Build into a private temporary directory, then rename it to `entry` (atomic; the first writer wins)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=entry.parent))
    try:
        prepared = build(config, tokenizer, chunk_dir=building)
        with open(building / CORPUS_FILE, "wb") as handle:
            pickle.dump((prepared.corpus, prepared.split), handle, protocol=pickle.HIGHEST_PROTOCOL)
        chunk_files = {
            side: [Path(f["filename"]).name for f in chunks.cache_files]
            for side, chunks in zip(SIDES, (prepared.train_chunks, prepared.val_chunks))
        }
        marker = {"chunk_files": chunk_files, "settings": preparation_settings(config)}
        (building / COMPLETE_MARKER).write_text(json.dumps(marker))
        try:
            os.rename(building, entry)
        except OSError:  # another run finished the same entry first; theirs is identical
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    # Chunks are re-opened from the final place, so the first and every later run use the same files.
    prepared.train_chunks, prepared.val_chunks = _load_chunks(entry)
    return prepared


def _load_chunks(entry: Path) -> tuple[Dataset, Dataset]:
    chunk_files = json.loads((entry / COMPLETE_MARKER).read_text())["chunk_files"]
    loaded = []
    for side in SIDES:
        parts = [Dataset.from_file(str(entry / name)) for name in chunk_files[side]]
        loaded.append(parts[0] if len(parts) == 1 else concatenate_datasets(parts))
    return loaded[0], loaded[1]


def _read_entry(entry: Path) -> PreparedChunks:
    with open(entry / CORPUS_FILE, "rb") as handle:
        corpus, split = pickle.load(handle)
    return PreparedChunks(corpus, split, *_load_chunks(entry))


@cyclic_gc.paused()
def prepare(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedChunks:
    """The prepared data: read from the cache when an entry for these inputs exists, else built (and stored).

    With --no_cache the data is built in memory and nothing is stored.
    """
    if config.data.cache is None:
        return build(config, tokenizer)
    entry = Path(config.data.cache) / cache_key(config, tokenizer)
    if (entry / COMPLETE_MARKER).is_file():
        logger.info("Prepared data read from the cache %s (--no_cache to rebuild)", entry)
        return _read_entry(entry)
    logger.info("Preparing data; the result is cached in %s", entry)
    return _write_entry(entry, config, tokenizer)
