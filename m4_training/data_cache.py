"""Prepared data (loaded, de-duplicated, split and chunked) cached on disk, so a second run skips preparation.

An entry is keyed (`datasets`' Hasher) by everything that decides its contents: the input files' bytes and paths
(reports quote them), the tokenizer, every data setting and the source of the code that prepares the data, so a
stale entry is never read. It holds the corpus and split (pickled) and the chunks as `DatasetDict.save_to_disk`
writes them, memory-mapped when read. Entries are built in a temporary directory and renamed into place, so
concurrent runs never see half an entry. The marker, written last, holds a checksum of every other file
(`load_from_disk` checks none): a damaged entry is rebuilt with a warning. A build locks its temporary directory,
so those of killed builds are recognised and removed. A cache directory that cannot be written is a warning: the
data is then prepared in memory, as with --no_cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from datasets.fingerprint import Hasher
from filelock import FileLock
from transformers import PreTrainedTokenizerBase

import chunking
import data_loaders
from data_loaders import Corpus, RequestedNames, TextNormalization, canonical_generator
from m4_training import augmentation, cyclic_gc, splits
from m4_training.cli import counted

logger = logging.getLogger(__name__)

CACHE_FORMAT = 4  # bumped when an entry's layout changes; 4: chunks saved by DatasetDict.save_to_disk, xxh64 checksums
# The code whose behaviour decides an entry's contents (cleaning.py holds canonicalize: --text_normalization).
CODE_FILES = (
    "data_loaders.py", "chunking.py", "m4_training/cleaning.py", "m4_training/splits.py", "m4_training/data_cache.py"
)  # fmt: skip
# And with --augment_attacks, so that their code changes the key only then.
AUGMENTATION_CODE_FILES = ("m4_training/augmentation.py", "m4_training/attacks.py")
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


@dataclass(frozen=True)
class DataSettings:
    """What the data stage reads, splits and chunks: train.py's settings of the same names."""

    data_dir: str
    reddit_file: str | None
    train_domains: list[str]
    train_generators: list[str]
    normalize_digits: bool
    text_normalization: bool
    max_train_samples: int | None
    max_val_samples: int | None
    augment_attacks: list[str] | None
    augment_rate: float
    stratified_split: bool
    validation_split: float
    val_generator: str | None
    val_domain: str | None
    reddit_val_fraction: float
    seed: int
    max_length: int
    chunk_overlap: int
    num_proc: int | None = None
    cache_dir: str | None = None  # None: prepared in memory, nothing cached (--no_cache)

    @property
    def normalization(self) -> TextNormalization:
        return TextNormalization(self.normalize_digits, self.text_normalization)

    @property
    def held_out_generator(self) -> str | None:
        """The generator validation holds out (the generator hold-out flow only: not stratified, no held-out domain)."""
        return None if self.stratified_split or self.val_domain is not None else self.val_generator


@dataclass
class PreparedChunks:
    corpus: Corpus
    split: splits.Split
    train_chunks: Dataset
    val_chunks: Dataset


def preparation_settings(settings: DataSettings) -> dict[str, Any]:
    """Every setting that changes the prepared data (the cache key): all but the worker count and the cache's place."""
    return {name: value for name, value in asdict(settings).items() if name not in ("num_proc", "cache_dir")}


def loaded_selection(settings: DataSettings) -> tuple[list[str], list[str]]:
    """The M4 domains and generators a run reads: --train_domains/--train_generators plus the held-out one, which
    is validation data, read whether or not the training lists name it."""
    domains, generators = list(settings.train_domains), list(settings.train_generators)
    if settings.val_domain is not None and settings.val_domain not in {d.lower() for d in domains}:
        domains.append(settings.val_domain)
    held_out = settings.held_out_generator
    if held_out is not None and canonical_generator(held_out) not in {canonical_generator(g) for g in generators}:
        generators.append(held_out)
    return domains, generators


def requested_names(settings: DataSettings) -> list[RequestedNames]:
    """The M4 names the user chose, each of which must match a file of --data_dir (a typo would drop data): the
    training lists when not the defaults (not every directory has all of M4), the held-out name always."""
    names = []
    if settings.train_domains != data_loaders.DEFAULT_DOMAINS:
        names.append(RequestedNames("--train_domains", "domains", settings.train_domains))
    if settings.train_generators != data_loaders.DEFAULT_GENERATORS:
        names.append(RequestedNames("--train_generators", "generators", settings.train_generators))
    if settings.val_domain is not None:
        names.append(RequestedNames("--val_domain", "domains", [settings.val_domain], single=True))
    if settings.held_out_generator is not None:
        names.append(RequestedNames("--val_generator", "generators", [settings.held_out_generator], single=True))
    return names


def input_files(settings: DataSettings) -> list[Path]:
    """The files a preparation with these settings reads (the same selection load_corpus makes)."""
    found = data_loaders.find_m4_files(
        Path(settings.data_dir), *loaded_selection(settings), must_match=requested_names(settings)
    )
    return [path for path, _, _ in found] + ([Path(settings.reddit_file)] if settings.reddit_file else [])


def file_digest(path: Path) -> str | None:
    """xxh64 of the file's bytes, read a block at a time; None for a missing file (preparation then reports it)."""
    if not path.is_file():
        return None
    with data_loaders.open_input(path) as handle:
        return Hasher.hash_bytes(iter(lambda: handle.read(1 << 20), b""))


def cache_key(settings: DataSettings, tokenizer: PreTrainedTokenizerBase) -> str:
    files = [{"path": str(p), "resolved": str(p.resolve()), "xxh64": file_digest(p)} for p in input_files(settings)]
    parts = {
        "format": CACHE_FORMAT,
        "settings": preparation_settings(settings),
        "files": files,
        # Not Hasher.hash(tokenizer): the same guarantee, but 0.5 s for roberta-base, 10x a whole cached run.
        "tokenizer": chunking.tokenizer_fingerprint(tokenizer),
        "code": {
            name: (ROOT / name).read_bytes()
            for name in CODE_FILES + (AUGMENTATION_CODE_FILES if settings.augment_attacks else ())
        },
    }
    return Hasher.hash(parts)


def build(settings: DataSettings, tokenizer: PreTrainedTokenizerBase, chunk_dir: Path | None = None) -> PreparedChunks:
    """Load, de-duplicate, split, add attacked training copies and chunk (into Arrow files in `chunk_dir` if given)."""
    corpus = data_loaders.load_corpus(
        settings.data_dir,
        *loaded_selection(settings),
        settings.reddit_file,
        settings.normalization,
        warn_missing=settings.cache_dir is None,  # with a cache, cache_key has looked the files up (and warned) already
        must_match=requested_names(settings),
    )
    split = splits.split_corpus(
        corpus,
        settings.stratified_split,
        settings.validation_split,
        settings.val_generator,
        settings.reddit_val_fraction,
        settings.seed,
        settings.max_train_samples,
        settings.max_val_samples,
        settings.val_domain,
    )
    if settings.augment_attacks:  # training copies only, after the split: validation is never attacked
        augmentation.augment_training(
            split, corpus, settings.augment_attacks, settings.augment_rate, settings.seed, settings.normalization
        )
    train_chunks, val_chunks = (
        chunking.chunk_documents(
            chunking.documents_to_dataset(docs),
            tokenizer,
            settings.max_length,
            settings.chunk_overlap,
            settings.num_proc,
            desc=f"Chunking {side}",
            cache_file_name=str(chunk_dir / f"{side}.arrow") if chunk_dir else None,
        )
        for side, docs in zip(SIDES, (split.train, split.val))
    )
    return PreparedChunks(corpus, split, train_chunks, val_chunks)


def remove_orphans(cache: Path) -> list[Path]:
    """Remove the temporary directories of builds that were killed (their lock is free); returns them."""
    removed = []
    for directory in cache.glob("*.tmp-*"):
        lock_file = directory / BUILD_LOCK
        try:
            if lock_file.exists():  # checked first: taking the lock would create the file
                with FileLock(lock_file, timeout=0):
                    pass
            elif time.time() - directory.stat().st_mtime < ORPHAN_MIN_AGE_S:
                continue
        except OSError:  # filelock's Timeout too: a build in progress (or another user's, not ours to judge)
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    if removed:
        entries = counted(len(removed), "unfinished cache entry", "unfinished cache entries")
        logger.warning("Removed %s of killed runs from %s", entries, cache)
    return removed


def _entry_checksums(directory: Path) -> dict[str, str | None]:
    return {
        path.relative_to(directory).as_posix(): file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in (COMPLETE_MARKER, BUILD_LOCK)
    }


def _write_entry(building: Path, entry: Path, settings: DataSettings, tokenizer: Any) -> PreparedChunks:
    """Build into `building`, then rename it to `entry` (atomic; the first writer wins; the caller removes a loser)."""
    prepared = build(settings, tokenizer, chunk_dir=building / MAPPED_DIR)
    with open(building / CORPUS_FILE, "wb") as handle:
        pickle.dump((prepared.corpus, prepared.split), handle, protocol=pickle.HIGHEST_PROTOCOL)
    with chunking.progress_bars(False):  # a copy of the chunks, a blink next to chunking them: no bar
        DatasetDict(zip(SIDES, (prepared.train_chunks, prepared.val_chunks))).save_to_disk(building / CHUNKS_DIR)
    shutil.rmtree(building / MAPPED_DIR)
    (building / BUILD_LOCK).unlink()
    marker = {"settings": preparation_settings(settings), "xxh64": _entry_checksums(building)}
    (building / COMPLETE_MARKER).write_text(json.dumps(marker))  # last: the entry is complete and verifiable
    with contextlib.suppress(OSError):  # another run finished the same entry first; theirs is identical
        os.rename(building, entry)
    # Chunks are re-opened from the final place, so the first and every later run use the same files.
    prepared.train_chunks, prepared.val_chunks = _load_chunks(entry)
    return prepared


def _load_chunks(entry: Path) -> tuple[Dataset, Dataset]:
    chunks = DatasetDict.load_from_disk(entry / CHUNKS_DIR, keep_in_memory=False)
    return chunks[SIDES[0]], chunks[SIDES[1]]


def read_entry(entry: Path) -> PreparedChunks:
    """The entry's data; DamagedEntry unless every file has the checksum its marker recorded and can be read."""
    try:
        expected = json.loads((entry / COMPLETE_MARKER).read_text())["xxh64"]
        found = _entry_checksums(entry)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedEntry(f"unreadable marker or files: {error}") from error
    if wrong := sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name)):
        raise DamagedEntry(f"{', '.join(wrong)} differ from the checksums written when the entry was made")
    try:
        with open(entry / CORPUS_FILE, "rb") as handle:
            corpus, split = pickle.load(handle)
        return PreparedChunks(corpus, split, *_load_chunks(entry))
    except Exception as error:  # a file that matches its checksum but cannot be read: made by other code
        raise DamagedEntry(f"cannot be read: {error}") from error


@cyclic_gc.paused()
def prepare(settings: DataSettings, tokenizer: PreTrainedTokenizerBase) -> PreparedChunks:
    """The prepared data: read from the cache when an entry for these inputs exists, else built (and stored).
    With --no_cache, or a cache directory that cannot be written, the data is built in memory."""
    if settings.cache_dir is None:
        return build(settings, tokenizer)
    cache = Path(settings.cache_dir)
    entry = cache / cache_key(settings, tokenizer)
    if (entry / COMPLETE_MARKER).is_file():
        try:
            prepared = read_entry(entry)
        except DamagedEntry as error:
            logger.warning("The cache entry %s is damaged (%s); preparing the data again", entry, error)
            # Moved out of the way atomically (others may be reading it), then deleted.
            doomed = entry.with_name(f"{entry.name}.tmp-damaged-{os.getpid()}-{time.time_ns()}")
            with contextlib.suppress(OSError):  # another run moved it already
                os.rename(entry, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        else:
            logger.info("Prepared data read from the cache %s (--no_cache to rebuild)", entry)
            return prepared
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # The directory is gone once renamed to the entry (or removed on exit); locked while the build runs.
        with (
            tempfile.TemporaryDirectory(prefix=f"{entry.name}.tmp-", dir=cache, ignore_cleanup_errors=True) as building,
            FileLock(Path(building) / BUILD_LOCK),
        ):
            remove_orphans(cache)
            logger.info("Preparing data; the result is cached in %s", entry)
            return _write_entry(Path(building), entry, settings, tokenizer)
    except OSError as error:  # the data is built again in memory, as with --no_cache
        reason = error.strerror or error
        logger.warning(
            "The cache directory %s cannot be written (%s); preparing the data without a cache", cache, reason
        )
    return build(settings, tokenizer)
