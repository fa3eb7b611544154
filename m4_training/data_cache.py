"""Prepared data (loaded, de-duplicated, split and chunked) cached on disk, so a second run skips preparation.

An entry is keyed by everything that decides its contents: the bytes of every input file (and the paths as
given, because reports quote them), the tokenizer's vocabulary and rules, the chunk window, normalisation,
every split and sampling setting, and the source of the code that prepares the data, hashed by `datasets`'
Hasher. Any change gives a new key, so a stale entry is never read. An entry holds the corpus and split
(pickled) and the chunk datasets as `DatasetDict.save_to_disk` writes them, memory-mapped by `load_from_disk`
rather than read into RAM. Entries are built in a temporary directory and renamed into place, so concurrent
runs (several ranks, two jobs) never see half an entry.

The entry's marker, written last, holds a checksum of every other file of the entry (`load_from_disk` checks
none); an entry that fails it (a full disk, a damaged file) is rebuilt with a warning. A build holds a lock on
its temporary directory, so the directories of killed builds are recognised and removed (`datasets` has no such
clean-up). A cache directory that cannot be written is a warning: the data is then prepared in memory, as with
--no_cache.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

import chunking
import data_loaders
from data_loaders import Corpus
from m4_training import cyclic_gc, splits
from m4_training.config import TrainConfig, loaded_selection, preparation_settings, requested_names
from m4_training.splits import Split

logger = logging.getLogger(__name__)

# Bump when the layout of an entry changes.
CACHE_FORMAT = 4  # 4: chunks saved by DatasetDict.save_to_disk, xxh64 checksums
# The code whose behaviour decides an entry's contents.
CODE_FILES = ("data_loaders.py", "chunking.py", "m4_training/splits.py", "m4_training/data_cache.py")
ROOT = Path(__file__).resolve().parents[1]
COMPLETE_MARKER = "complete.json"
CORPUS_FILE = "corpus_and_split.pkl"
CHUNKS_DIR = "chunks"  # DatasetDict.save_to_disk's directory: one folder per side
MAPPED_DIR = "mapped"  # the Arrow files chunking writes in a build, removed once saved to CHUNKS_DIR
SIDES = ("train", "val")
BUILD_LOCK = ".building.lock"  # in a temporary build directory; locked for as long as its build runs
# A temporary directory without its lock file is only taken for a dead build's after this long (its builder
# may be between creating the directory and the lock).
ORPHAN_MIN_AGE_S = 600


class DamagedEntry(Exception):
    """A cache entry whose files do not match the checksums in its marker, or cannot be read."""


@dataclass
class PreparedChunks:
    corpus: Corpus
    split: Split
    train_chunks: Dataset
    val_chunks: Dataset


def input_files(config: TrainConfig) -> list[Path]:
    """The files a preparation with these settings reads (the same selection load_corpus makes)."""
    data = config.data
    found = data_loaders.find_m4_files(
        Path(data.data_dir), *loaded_selection(config), must_match=requested_names(config)
    )
    return [path for path, _, _ in found] + ([Path(data.reddit_file)] if data.reddit_file else [])


def file_digest(path: Path) -> str | None:
    """xxh64 of the file's bytes, read a block at a time; None for a missing file (preparation then reports it)."""
    if not path.is_file():
        return None
    with data_loaders.open_input(path) as handle:
        return Hasher.hash_bytes(iter(lambda: handle.read(1 << 20), b""))


def cache_key(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    files = [
        {"path": str(path), "resolved": str(path.resolve()), "xxh64": file_digest(path)} for path in input_files(config)
    ]
    parts = {
        "format": CACHE_FORMAT,
        "settings": preparation_settings(config),
        "files": files,
        # Not Hasher.hash(tokenizer): the same guarantee, but 0.5 s for roberta-base, 10x a whole cached run.
        "tokenizer": chunking.tokenizer_fingerprint(tokenizer),
        "code": {name: (ROOT / name).read_bytes() for name in CODE_FILES},
    }
    return Hasher.hash(parts)


def build(config: TrainConfig, tokenizer: PreTrainedTokenizerBase, chunk_dir: Path | None = None) -> PreparedChunks:
    """Load, de-duplicate, split and chunk. With `chunk_dir` the chunks are written there as Arrow files."""
    data, split_args, window = config.data, config.split, config.chunking
    corpus = data_loaders.load_corpus(
        data.data_dir,
        *loaded_selection(config),
        data.reddit_file,
        data.normalize_digits,
        warn_missing=data.cache is None,  # with a cache, cache_key has looked the files up (and warned) already
        must_match=requested_names(config),
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
        split_args.val_domain,
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


def _start_build(cache: Path, entry: Path) -> tuple[Path, int]:
    """A private temporary directory for building `entry`, and the descriptor of its held lock.

    A plain flock: filelock's FileLock may write probe and marker files into the directory it locks.
    """
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=cache))
    lock = os.open(building / BUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return building, lock


def remove_orphans(cache: Path) -> list[Path]:
    """Remove the temporary directories of builds that were killed (their lock is free); returns them."""
    removed = []
    for directory in cache.glob("*.tmp-*"):
        try:
            lock = os.open(directory / BUILD_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            if time.time() - directory.stat().st_mtime < ORPHAN_MIN_AGE_S:
                continue
        except OSError:
            continue  # not ours to judge (another user's build)
        else:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build in progress
            finally:
                os.close(lock)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    if removed:
        logger.warning("Removed %d unfinished cache entries of killed runs from %s", len(removed), cache)
    return removed


def _entry_checksums(directory: Path) -> dict[str, str | None]:
    return {
        path.relative_to(directory).as_posix(): file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in (COMPLETE_MARKER, BUILD_LOCK)
    }


def _write_entry(building: Path, entry: Path, config: TrainConfig, tokenizer: Any) -> PreparedChunks:
    """Build into `building`, then rename it to `entry` (atomic; the first writer wins)."""
    prepared = build(config, tokenizer, chunk_dir=building / MAPPED_DIR)
    with open(building / CORPUS_FILE, "wb") as handle:
        pickle.dump((prepared.corpus, prepared.split), handle, protocol=pickle.HIGHEST_PROTOCOL)
    with chunking.progress_bars(False):  # a copy of the chunks, a blink next to chunking them: no bar
        DatasetDict(zip(SIDES, (prepared.train_chunks, prepared.val_chunks))).save_to_disk(building / CHUNKS_DIR)
    shutil.rmtree(building / MAPPED_DIR)
    (building / BUILD_LOCK).unlink()
    marker = {"settings": preparation_settings(config), "xxh64": _entry_checksums(building)}
    (building / COMPLETE_MARKER).write_text(json.dumps(marker))  # last: the entry is complete and verifiable
    try:
        os.rename(building, entry)
    except OSError:  # another run finished the same entry first; theirs is identical
        shutil.rmtree(building, ignore_errors=True)
    # Chunks are re-opened from the final place, so the first and every later run use the same files.
    prepared.train_chunks, prepared.val_chunks = _load_chunks(entry)
    return prepared


def _load_chunks(entry: Path) -> tuple[Dataset, Dataset]:
    chunks = DatasetDict.load_from_disk(entry / CHUNKS_DIR, keep_in_memory=False)
    return chunks[SIDES[0]], chunks[SIDES[1]]


def verify_entry(entry: Path) -> None:
    """Raise DamagedEntry unless every file of the entry has the checksum its marker recorded."""
    try:
        expected = json.loads((entry / COMPLETE_MARKER).read_text())["xxh64"]
        found = _entry_checksums(entry)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedEntry(f"unreadable marker or files: {error}") from error
    wrong = sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name))
    if wrong:
        raise DamagedEntry(f"{', '.join(wrong)} differ from the checksums written when the entry was made")


def _read_entry(entry: Path) -> PreparedChunks:
    verify_entry(entry)
    try:
        with open(entry / CORPUS_FILE, "rb") as handle:
            corpus, split = pickle.load(handle)
        return PreparedChunks(corpus, split, *_load_chunks(entry))
    except Exception as error:  # a file that matches its checksum but cannot be read: made by other code
        raise DamagedEntry(f"cannot be read: {error}") from error


def _discard(entry: Path) -> None:
    """Move a damaged entry out of the way (atomically, others may be reading it) and delete it."""
    doomed = entry.with_name(f"{entry.name}.tmp-damaged-{os.getpid()}-{time.time_ns()}")
    try:
        os.rename(entry, doomed)
    except OSError:
        return  # another run moved it already
    shutil.rmtree(doomed, ignore_errors=True)


@cyclic_gc.paused()
def prepare(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedChunks:
    """The prepared data: read from the cache when an entry for these inputs exists, else built (and stored).

    With --no_cache, or a cache directory that cannot be written, the data is built in memory.
    """
    if config.data.cache is None:
        return build(config, tokenizer)
    cache = Path(config.data.cache)
    entry = cache / cache_key(config, tokenizer)
    if (entry / COMPLETE_MARKER).is_file():
        try:
            prepared = _read_entry(entry)
        except DamagedEntry as error:
            logger.warning("The cache entry %s is damaged (%s); preparing the data again", entry, error)
            _discard(entry)
        else:
            logger.info("Prepared data read from the cache %s (--no_cache to rebuild)", entry)
            return prepared
    try:
        building, lock = _start_build(cache, entry)
    except OSError as error:
        logger.warning(
            "The cache directory %s cannot be written (%s); preparing the data without a cache (as --no_cache)",
            cache,
            error.strerror or error,
        )
        return build(config, tokenizer)
    try:
        remove_orphans(cache)
        logger.info("Preparing data; the result is cached in %s", entry)
        return _write_entry(building, entry, config, tokenizer)
    except OSError as error:
        logger.warning(
            "Could not store the prepared data in %s (%s); preparing it again without a cache",
            cache,
            error.strerror or error,
        )
        shutil.rmtree(building, ignore_errors=True)
        return build(config, tokenizer)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        os.close(lock)
