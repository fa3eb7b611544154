"""Prepared data (loaded, de-duplicated, split and chunked) cached on disk, so a second run skips preparation.

An entry is keyed by everything that decides its contents: the bytes of every input file (and the paths as
given, because reports quote them), the tokenizer's vocabulary and rules, the chunk window, normalisation,
every split and sampling setting, and the source of the code that prepares the data. Any change gives a new
key, so a stale entry is never read. An entry holds the corpus and split (pickled) and the chunk datasets as
Arrow files, which are memory-mapped on load rather than read into RAM. Entries are built in a temporary
directory and renamed into place, so concurrent runs (several ranks, two jobs) never see half an entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

import chunking
import data_loaders

logger = logging.getLogger(__name__)

# Bump when the layout of an entry changes.
CACHE_FORMAT = 1
# The code whose behaviour decides an entry's contents.
CODE_FILES = ("data_loaders.py", "chunking.py", "data_cache.py")
COMPLETE_MARKER = "complete.json"
CORPUS_FILE = "corpus_and_split.pkl"
SIDES = ("train", "val")


@dataclass(frozen=True)
class PreparationSettings:
    """Every setting that changes the prepared data."""

    data_dir: str
    train_domains: tuple[str, ...]
    train_generators: tuple[str, ...]
    reddit_file: str | None
    normalize_digits: bool
    stratified_split: bool
    validation_split: float
    val_generator: str
    reddit_val_fraction: float
    seed: int
    max_train_samples: int | None
    max_val_samples: int | None
    max_length: int
    chunk_overlap: int

    @classmethod
    def from_args(cls, args: argparse.Namespace, reddit_file: str | None) -> PreparationSettings:
        return cls(
            data_dir=str(args.data_dir),
            train_domains=tuple(args.train_domains),
            train_generators=tuple(args.train_generators),
            reddit_file=reddit_file,
            normalize_digits=args.normalize_digits,
            stratified_split=args.stratified_split,
            validation_split=args.validation_split,
            val_generator=args.val_generator,
            reddit_val_fraction=args.reddit_val_fraction,
            seed=args.seed,
            max_train_samples=args.max_train_samples,
            max_val_samples=args.max_val_samples,
            max_length=args.max_length,
            chunk_overlap=args.chunk_overlap,
        )


class PreparedChunks(NamedTuple):
    corpus: data_loaders.Corpus
    split: data_loaders.Split
    train_chunks: Dataset
    val_chunks: Dataset


def input_files(settings: PreparationSettings) -> list[Path]:
    """The files a preparation with these settings reads (the same selection load_corpus makes)."""
    found = data_loaders.find_m4_files(
        Path(settings.data_dir), list(settings.train_domains), list(settings.train_generators)
    )
    files = [path for path, _, _ in found]
    return files + ([Path(settings.reddit_file)] if settings.reddit_file else [])


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
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def cache_key(settings: PreparationSettings, tokenizer: PreTrainedTokenizerBase) -> str:
    files = [
        {"path": str(path), "resolved": str(path.resolve()), "blake2b": file_digest(path)}
        for path in input_files(settings)
    ]
    parts = {
        "format": CACHE_FORMAT,
        "settings": asdict(settings),
        "files": files,
        "tokenizer": chunking.tokenizer_fingerprint(tokenizer),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def build(
    settings: PreparationSettings,
    tokenizer: PreTrainedTokenizerBase,
    num_proc: int | None = None,
    chunk_dir: Path | None = None,
) -> PreparedChunks:
    """Load, de-duplicate, split and chunk. With `chunk_dir` the chunks are written there as Arrow files."""
    corpus = data_loaders.load_corpus(
        settings.data_dir,
        list(settings.train_domains),
        list(settings.train_generators),
        settings.reddit_file,
        settings.normalize_digits,
    )
    split = data_loaders.split_corpus(
        corpus,
        settings.stratified_split,
        settings.validation_split,
        settings.val_generator,
        settings.reddit_val_fraction,
        settings.seed,
        settings.max_train_samples,
        settings.max_val_samples,
    )
    train_chunks, val_chunks = (
        chunking.chunk_documents(
            chunking.documents_to_dataset(docs),
            tokenizer,
            settings.max_length,
            settings.chunk_overlap,
            num_proc,
            desc=f"Chunking {side}",
            cache_file_name=str(chunk_dir / f"{side}.arrow") if chunk_dir else None,
        )
        for side, docs in zip(SIDES, (split.train, split.val))
    )
    return PreparedChunks(corpus, split, train_chunks, val_chunks)


def _write_entry(entry: Path, settings: PreparationSettings, tokenizer: Any, num_proc: int | None) -> PreparedChunks:
    """Build into a private temporary directory, then rename it to `entry` (atomic; the first writer wins)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=entry.parent))
    try:
        prepared = build(settings, tokenizer, num_proc, chunk_dir=building)
        with open(building / CORPUS_FILE, "wb") as handle:
            pickle.dump((prepared.corpus, prepared.split), handle, protocol=pickle.HIGHEST_PROTOCOL)
        chunk_files = {
            side: [Path(f["filename"]).name for f in chunks.cache_files]
            for side, chunks in zip(SIDES, (prepared.train_chunks, prepared.val_chunks))
        }
        (building / COMPLETE_MARKER).write_text(json.dumps({"chunk_files": chunk_files, "settings": asdict(settings)}))
        try:
            os.rename(building, entry)
        except OSError:  # another run finished the same entry first; theirs is identical
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    # Chunks are re-opened from the final place, so the first and every later run use the same files.
    return prepared._replace(**_load_chunks(entry))


def _load_chunks(entry: Path) -> dict[str, Dataset]:
    chunk_files = json.loads((entry / COMPLETE_MARKER).read_text())["chunk_files"]
    loaded = {}
    for side in SIDES:
        parts = [Dataset.from_file(str(entry / name)) for name in chunk_files[side]]
        loaded[f"{side}_chunks"] = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return loaded


def _read_entry(entry: Path) -> PreparedChunks:
    with open(entry / CORPUS_FILE, "rb") as handle:
        corpus, split = pickle.load(handle)
    return PreparedChunks(corpus=corpus, split=split, **_load_chunks(entry))


def prepare(
    settings: PreparationSettings,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | Path | None,
    num_proc: int | None = None,
) -> PreparedChunks:
    """The prepared data: read from `cache_dir` when an entry for these inputs exists, else built (and stored).

    `cache_dir=None` builds in memory and stores nothing.
    """
    if cache_dir is None:
        return build(settings, tokenizer, num_proc)
    entry = Path(cache_dir) / cache_key(settings, tokenizer)
    if (entry / COMPLETE_MARKER).is_file():
        logger.info("Prepared data read from the cache %s (--no_cache to rebuild)", entry)
        return _read_entry(entry)
    logger.info("Preparing data; the result is cached in %s", entry)
    return _write_entry(entry, settings, tokenizer, num_proc)
