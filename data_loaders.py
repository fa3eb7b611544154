"""The one reader of every input: M4 files, Reddit files, labelled or plain JSONL/CSV, text files and stdin.

Every entry point reads through this module, so they agree on text fields, labels and what makes a row unusable.
Every row that does not become a document is counted by reason, with its line number, in its file's `FileReport`.
Documents are normalised, identical texts merged and each M4 row's texts grouped here; splits.py splits the groups.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from m4_training.cleaning import canonicalize
from m4_training.cli import UserError, counted

logger = logging.getLogger(__name__)

HUMAN, MACHINE = 0, 1
LABEL_NAMES = {HUMAN: "human", MACHINE: "machine"}
HUMAN_GENERATOR = "human"
# The M4 domains and generators read when --train_domains/--train_generators are not given. Not all of them need
# be present in a data directory; names given on the command line must each match a file.
DEFAULT_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow", "peerread"]
DEFAULT_GENERATORS = ["chatGPT", "davinci", "cohere", "dolly", "flant5"]
# Spellings used by different M4 releases for the same generator.
GENERATOR_ALIASES = {"dolly2": "dolly", "flan-t5": "flant5", "gpt-3.5-turbo": "chatgpt"}
HUMAN_TEXT_FIELDS = ("human_text", "text")
MACHINE_TEXT_FIELDS = ("machine_text",)
# The text of a document row (JSONL, CSV, Reddit files and dumps): the first of these that is present.
TEXT_FIELDS = ("text", "body", "selftext")
ID_FIELDS = ("id", "source_ID", "source_id")
LABEL_WORDS = {"human": HUMAN, "machine": MACHINE}
M4_CORPUS, REDDIT_CORPUS = "m4", "reddit_file"
# The domain of a Reddit-file post is its row's `source`, else this (prepare_data.py's default `source` too); not
# M4's `reddit`, whose texts are answers to ELI5 questions.
REDDIT_DOMAIN = "reddit_posts"
PASSTHROUGH_FIELDS = ("domain", "generator")
# Where a row has no `domain`/`generator`, these name them: SemEval-2024 Task 8 subtask A JSONL rows are
# {text, label, model, source, id}.
FIELD_ALIASES = {"domain": "source", "generator": "model"}
# RAID's CSV (liamdugan/raid): a row per generation, human ones with model `human`, no model in its test CSV. A CSV
# is read as RAID's when its header has `generation` and `model` or no text column (or with --input_format raid).
RAID_REQUIRED = ("id", "generation")
RAID_LABEL_COLUMN = "model"
# A RAID row's columns kept per document (predictions and metrics group by decoding and attack).
RAID_EXTRA_FIELDS = ("decoding", "repetition_penalty", "attack")
MAX_LOGGED_SKIPS_PER_REASON = 5  # per file; every skip is counted in the report

_DIGIT = re.compile(r"\d")
_JSON_ARRAY_START = re.compile(rb"\[\s*[{\]]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # halves of UTF-16 surrogate pairs: code points UTF-8 cannot encode
NORMALIZE_PIECE_CHARS = 1_000_000  # longer texts are normalised in pieces of this size
# Leading bytes of compressed files, with the command that unpacks them.
COMPRESSED_SIGNATURES = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
    (b"PK\x03\x04", "zip", "unzip"),
)
# Digits of an ASCII text mapped by a byte table: the same result as _DIGIT, three times faster.
_ASCII_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"0" * 9)


class TextNormalization(NamedTuple):
    """How a text is normalised before a model sees it, the same in training, evaluation, predict.py and the page
    (saved in training_config.json, so a model is always scored as it was trained)."""

    digits: bool  # every digit becomes 0
    unicode: bool  # cleaning.canonicalize: NFKC, invisible characters removed, look-alike letters made Latin


def normalize_text(text: str, normalization: TextNormalization) -> str:
    """The one normalisation shared by training, evaluation and prediction.

    Unicode is canonicalised first (optionally): a homoglyph or zero-width-space attack changes what a model sees
    but not what a reader sees. Whitespace runs become one space: M4's human arXiv abstracts keep hard line breaks
    that the machine texts lack, a formatting artefact. Digits optionally become 0 so numbers are no shortcut.
    """
    if len(text) > NORMALIZE_PIECE_CHARS:
        return _normalize_in_pieces(text, normalization)
    if normalization.unicode:
        text = canonicalize(text)
    text = " ".join(text.split())  # the same Unicode whitespace as the regex \s, three times faster
    if not normalization.digits:
        return text
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_DIGITS_TO_ZERO).decode("ascii")
    return _DIGIT.sub("0", text)


def _normalize_in_pieces(text: str, normalization: TextNormalization) -> str:
    """`normalize_text` of a huge text, a piece at a time: on the whole text, str.split() and re.sub would make one
    Python string per word or match, about ten times the text's size for one 48 MB document."""
    parts: list[str] = []
    space_before = False  # whether whitespace separates the next part from the last one
    for piece in text_pieces(text, NORMALIZE_PIECE_CHARS):
        normalized = normalize_text(piece, normalization)
        space_before = space_before or piece[0].isspace()
        if normalized:
            parts.append(" " + normalized if parts and space_before else normalized)
        space_before = piece[-1].isspace()
    return "".join(parts)


def text_pieces(text: str, size: int) -> Iterator[str]:
    """Consecutive pieces of at most `size` characters that join to `text`, each cut before a space if any."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start + 1, start + size + 1)
        cut = cut if cut > start else start + size
        yield text[start:cut]
        start = cut
    yield text[start:]


def canonical_generator(name: str) -> str:
    name = name.strip().lower()
    return GENERATOR_ALIASES.get(name, name)


def parse_label(value: Any, missing: int | None = None) -> int | None:
    """0/1 as int, float or string, or "human"/"machine"; `missing` for an absent label; None if invalid."""
    if isinstance(value, str):
        value = LABEL_WORDS.get(value.strip().lower(), value.strip() or None)
    if value is None:
        return missing
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number in (0.0, 1.0) and not isinstance(value, bool) else None


@dataclass
class Document:
    doc_id: int
    text: str
    label: int
    domain: str
    generator: str
    sources: list[dict[str, Any]]
    group_id: int = -1


@dataclass
class FileReport:
    """Rows read from one file and the rows skipped, by reason, with their line numbers."""

    path: str
    kind: str  # "m4", "reddit" or "input"
    domain: str | None = None
    generator: str | None = None
    rows: int = 0
    used: int = 0
    documents: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, line: int, reason: str) -> None:
        self.skipped[reason] += 1
        self.skipped_lines.setdefault(reason, []).append(line)
        if self.skipped[reason] <= MAX_LOGGED_SKIPS_PER_REASON:
            logger.warning("%s:%d: skipped (%s)", self.path, line, reason)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_lines": dict(sorted(self.skipped_lines.items())),
        }


# ----------------------------------------------------------------------------------------------- files and rows


def check_not_compressed(name: str, head: bytes) -> None:
    """A compressed file read as text would only give garbage rows: stop, naming the file and the command."""
    for signature, kind, command in COMPRESSED_SIGNATURES:
        if head.startswith(signature):
            raise UserError(f"{name}: compressed ({kind}): {command} it first")


def open_input(path: Path) -> IO[bytes]:
    """The file opened for reading; a path that is missing, a directory, unreadable or compressed stops the run."""
    if not os.path.lexists(path):
        raise UserError(f"{path}: not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a file")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from error
    try:
        check_not_compressed(str(path), handle.peek(8)[:8])
    except BaseException:
        handle.close()
        raise
    return handle


def has_lone_surrogate(value: Any) -> bool:
    """Whether any key or string of a JSON value holds half of a UTF-16 surrogate pair (valid JSON, not UTF-8)."""
    return bool(_SURROGATE.search(json.dumps(value, ensure_ascii=False)))


def parse_json_line(raw: bytes, objects_only: bool = True) -> tuple[Any, str | None]:
    """(value, None) or (None, skip reason) for one line of a JSONL file (or a whole JSON document)."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    except RecursionError:
        return None, "too_deeply_nested"
    except json.JSONDecodeError:
        return None, "malformed_json"
    except ValueError:  # the only other one json raises: an integer above sys.get_int_max_str_digits() digits
        return None, "integer_too_long"
    if objects_only and not isinstance(value, dict):
        return None, "not_a_json_object"
    if (b"\\ud" in raw or b"\\uD" in raw) and has_lone_surrogate(value):
        return None, "lone_surrogate"
    return value, None


def iter_jsonl(source: Path | IO[bytes], report: FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, row) for each JSON object; count the lines that are not one."""
    with open_input(source) if isinstance(source, Path) else source as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            report.rows += 1
            row, problem = parse_json_line(raw)
            if problem:
                report.skip(line_number, problem)
                continue
            yield line_number, row


def iter_csv(
    source: Path | IO[bytes], report: FileReport, raid: bool | None = False, labels_required: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line where the record starts, row) of a CSV (TSV by a .tsv name) file with a header line.

    A header without any of the text columns (TEXT_FIELDS) stops the run: no row of such a file could be used.
    `raid`: read RAID's layout (None: when the header is RAID's), each row as a plain one (`raid_row`).
    """
    csv.field_size_limit(sys.maxsize)
    binary = open_input(source) if isinstance(source, Path) else source
    with io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if report.path.lower().endswith(".tsv") else ",")
        columns = reader.fieldnames or []
        text_columns = set(columns) & {*TEXT_FIELDS, "human_text", "machine_text"}
        if raid is None:
            raid = "generation" in columns and (RAID_LABEL_COLUMN in columns or not text_columns)
        if raid:  # a RAID CSV without the columns every document needs (and `model`, for labels) stops the run
            needed = RAID_REQUIRED + ((RAID_LABEL_COLUMN,) if labels_required else ())
            missing = [name for name in needed if name not in columns]
            labels = " (labels come from model: human or a generator)" if RAID_LABEL_COLUMN in missing else ""
            problem = f"RAID CSV without column {', '.join(missing)}{labels}" if missing else None
        else:
            problem = None if text_columns else f"no text column ({', '.join(TEXT_FIELDS)}) in the CSV header"
        if problem:
            raise UserError(f"{report.path}: {problem}; columns: {', '.join(map(str, columns)) or 'none'}")
        start = reader.line_num + 1
        for row in reader:
            report.rows += 1
            if any("\ufffd" in str(value) for value in row.values()):
                report.skip(start, "invalid_utf8")
            elif None in row:
                report.skip(start, "malformed_csv")
            else:
                yield start, raid_row(row) if raid else row
            start = reader.line_num + 1


def raid_row(row: dict[str, str]) -> dict[str, Any]:
    """A RAID row as a plain document row: text = generation, label 0 for model `human` else 1, generator =
    model, and its domain, decoding, repetition_penalty and attack (a test CSV without `model`: no label)."""
    model = row.get(RAID_LABEL_COLUMN)
    label = {} if model in (None, "") else {"label": HUMAN if model == HUMAN_GENERATOR else MACHINE}
    extras = {key: row[key] for key in ("domain", *RAID_EXTRA_FIELDS) if row.get(key) not in (None, "")}
    return {"id": row["id"], "text": row["generation"], **label, "generator": model, **extras}


def iter_rows(path: Path, report: FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a JSONL or CSV file (by its name)."""
    return iter_csv(path, report) if path.suffix.lower() in (".csv", ".tsv") else iter_jsonl(path, report)


def extract_text(row: dict[str, Any], fields: tuple[str, ...]) -> tuple[str | None, str, str | None]:
    """(text, field it came from, skip reason) from the first of `fields` in the row with a value.

    List-valued texts (peerread) are joined; in CSV rows every column exists, so an empty one is passed over.
    """
    present = [name for name in fields if name in row]
    key = next((name for name in present if row[name] not in ("", None)), present[0] if present else None)
    if key is None:
        return None, fields[0], "missing"
    value = row[key]
    if value is None:
        return None, key, "null"
    if isinstance(value, list):
        value = "\n\n".join(str(item) for item in value if item is not None)
    if not isinstance(value, str):
        return None, key, "not_a_string"
    if not value.strip():
        return None, key, "empty"
    return value, key, None


def m4_row_texts(row: dict[str, Any]) -> Iterator[tuple[str, int, str | None, str, str | None]]:
    """(role, label, text, field, skip reason) of an M4 row's human and of its machine text."""
    for role, label, fields in (("human", HUMAN, HUMAN_TEXT_FIELDS), ("machine", MACHINE, MACHINE_TEXT_FIELDS)):
        yield role, label, *extract_text(row, fields)


# ----------------------------------------------------------------------------------------------- M4 files


def parse_m4_filename(path: Path) -> tuple[str, str] | None:
    """`<domain>_<generator>.jsonl` -> (domain, canonical generator); domains may contain '-' but not '_'."""
    domain, _, generator = path.stem.rpartition("_")
    return (domain.lower(), canonical_generator(generator)) if domain and generator else None


def m4_files(directory: Path) -> list[tuple[Path, str, str]]:
    """(path, domain, generator) of each `<domain>_<generator>.jsonl` file in the directory, by name."""
    return [(path, *parsed) for path in sorted(directory.glob("*.jsonl")) if (parsed := parse_m4_filename(path))]


def files_there(directory: Path, shown: int = 10) -> str:
    """The names in a directory, for a message: the first `shown` by name, then how many more."""
    names = sorted(path.name for path in directory.iterdir())
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more if names else "none"


class RequestedNames(NamedTuple):
    """Domain or generator names the user gave under one flag: each must match some M4 file, as a typo would
    otherwise only drop data. `single`: the flag takes one name."""

    flag: str
    kind: Literal["domains", "generators"]
    names: Sequence[str]
    single: bool = False


def check_requested_names(
    where: str, available: list[tuple[Path, str, str]], requested: Iterable[RequestedNames]
) -> None:
    """Every name of `requested` must match some of the `available` files: else an error with the names there,
    the close ones, and the flag that would read them."""
    present = {"domains": sorted({d for _, d, _ in available}), "generators": sorted({g for _, _, g in available})}
    problems = []
    for flag, kind, names, single in requested:
        canonical = str.lower if kind == "domains" else canonical_generator
        given = {canonical(name): name for name in names}
        unmatched = [name for name in given if name not in present[kind]]
        if not unmatched:
            continue
        close = [match for name in unmatched for match in difflib.get_close_matches(name, present[kind], n=1)]
        fix = list(dict.fromkeys([name for name in given if name in present[kind]] + close)) or present[kind]
        problems.append(
            f"{flag} {' '.join(given[name] for name in unmatched)} "
            + ("matches" if len(unmatched) == 1 else "match")
            + " no file"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f"; {kind} there: {' '.join(present[kind])} (give {flag} {(' or ' if single else ' ').join(fix)})"
        )
    if problems:
        raise UserError(f"{where}: " + "; ".join(problems))


def find_m4_files(
    data_dir: Path,
    domains: list[str],
    generators: list[str],
    warn_missing: bool = True,
    must_match: Sequence[RequestedNames] | None = None,
) -> list[tuple[Path, str, str]]:
    """The M4 files for the requested domains and generators, matched case-insensitively and by alias.

    `must_match`: the names that must each match some file (None: all of --train_domains/--train_generators).
    Pairs without a file are only logged (a default list need not be all there), unless `warn_missing` is False:
    a second look-up in the same run (the data cache's key is computed first), so the warning is printed once.
    """
    if not data_dir.is_dir():
        raise UserError(f"M4 data directory not found: {data_dir} (set --data_dir)")
    available = m4_files(data_dir)
    if not available:
        raise UserError(f"no <domain>_<generator>.jsonl files in {data_dir} (files there: {files_there(data_dir)})")
    if must_match is None:
        must_match = [
            RequestedNames("--train_domains", "domains", domains),
            RequestedNames("--train_generators", "generators", generators),
        ]
    check_requested_names(str(data_dir), available, must_match)
    wanted = {"domains": {d.lower() for d in domains}, "generators": {canonical_generator(g) for g in generators}}
    selected = [(p, d, g) for p, d, g in available if d in wanted["domains"] and g in wanted["generators"]]
    if not selected:
        there = {"domains": {d for _, d, _ in available}, "generators": {g for _, _, g in available}}
        fixes = [f"--train_{kind} {' '.join(sorted(there[kind]))}" for kind in there if not there[kind] & wanted[kind]]
        raise UserError(
            f"no M4 file in {data_dir} matches --train_domains {' '.join(domains)} and --train_generators "
            f"{' '.join(generators)}; files there: {', '.join(p.name for p, _, _ in available)}"
            + (f" (give {' '.join(fixes)})" if fixes else "")
        )
    found = {(d, g) for _, d, g in selected}
    missing = sorted(f"{d}_{g}" for d in wanted["domains"] for g in wanted["generators"] if (d, g) not in found)
    if missing and warn_missing:
        pairs = counted(len(missing), "requested domain/generator pair")
        logger.warning("No M4 file for %s: %s", pairs, ", ".join(missing))
    return selected


def ignored_m4_files(data_dir: Path, read: set[Path], domains: list[str]) -> list[dict[str, str]]:
    """The .jsonl files in data_dir that the run does not read, each with the reason (logged and reported)."""
    wanted_domains = {d.lower() for d in domains}
    ignored = []
    for path in sorted(path for path in data_dir.glob("*.jsonl") if path.resolve() not in read):
        parsed = parse_m4_filename(path)
        if parsed is None:
            reason = "name is not <domain>_<generator>.jsonl"
        elif parsed[0] not in wanted_domains:
            reason = f"domain {parsed[0]} not in --train_domains"
        else:
            reason = f"generator {parsed[1]} not in --train_generators"
        ignored.append({"path": str(path), "reason": reason})
    if ignored:
        names = "; ".join(f"{Path(entry['path']).name} ({entry['reason']})" for entry in ignored)
        logger.info("Not reading %s in %s: %s", counted(len(ignored), "file"), data_dir, names)
    return ignored


# ----------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """The de-duplicated, grouped documents of one run and the bookkeeping of how they were made."""

    documents: list[Document]
    files: list[FileReport]
    duplicates_removed: int = 0
    conflicting_label_documents: int = 0
    conflicting_documents: list[Document] = field(default_factory=list)
    generators_by_domain: dict[str, list[str]] = field(default_factory=dict)
    ignored_files: list[dict[str, str]] = field(default_factory=list)

    @cached_property
    def m4_paths(self) -> frozenset[str]:
        return frozenset(report.path for report in self.files if report.kind == "m4")

    def from_m4(self, document: Document) -> bool:
        """Whether any occurrence of the document came from an M4 file (rather than the Reddit file)."""
        return any(source["file"] in self.m4_paths for source in document.sources)

    def corpus_name(self, document: Document) -> str:
        return M4_CORPUS if self.from_m4(document) else REDDIT_CORPUS


class _CorpusBuilder:
    """Collects documents, merging identical texts and remembering which documents came from one row."""

    def __init__(self, normalization: TextNormalization) -> None:
        self.normalization = normalization
        self.documents: list[Document] = []
        self.index_by_text: dict[str, int] = {}
        self.conflicting: set[int] = set()
        self.row_links: list[tuple[int, int]] = []
        self.duplicates_removed = 0

    def add(self, text: str, label: int, domain: str, generator: str, source: dict[str, Any]) -> int:
        text = normalize_text(text, self.normalization)
        index = self.index_by_text.setdefault(text, len(self.documents))
        if index == len(self.documents):
            self.documents.append(Document(index, text, label, domain, generator, [source]))
            return index
        existing = self.documents[index]
        existing.sources.append(source)
        if existing.label != label:
            self.conflicting.add(index)
        else:
            self.duplicates_removed += 1
        return index

    def build(self, files: list[FileReport]) -> Corpus:
        keep = [doc for doc in self.documents if doc.doc_id not in self.conflicting]
        conflicting_occurrences = sum(len(self.documents[i].sources) for i in self.conflicting)
        if self.conflicting:
            texts, occurrences = counted(len(self.conflicting), "text"), counted(conflicting_occurrences, "occurrence")
            logger.warning("Dropped %s (%s) that appear both as human and as machine text", texts, occurrences)
        links = [link for link in self.row_links if not self.conflicting.intersection(link)]
        assign_groups(keep, links, len(self.documents))
        generators: dict[str, set[str]] = defaultdict(set)
        for report in files:
            if report.kind == "m4" and report.documents:
                generators[report.domain].add(report.generator)
        return Corpus(
            documents=keep,
            files=files,
            duplicates_removed=self.duplicates_removed,
            conflicting_label_documents=conflicting_occurrences,
            conflicting_documents=[self.documents[i] for i in sorted(self.conflicting)],
            generators_by_domain={d: sorted(g) for d, g in sorted(generators.items())},
        )


def assign_groups(documents: list[Document], links: list[tuple[int, int]], n_ids: int) -> None:
    """Join the documents of each M4 row (doc_ids below `n_ids`); a group's id is the smallest doc_id in it."""
    rows, columns = np.array(links, dtype=np.int64).reshape(-1, 2).T
    graph = coo_array((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(n_ids, n_ids))
    component = connected_components(graph, directed=False)[1]
    smallest = np.full(n_ids, n_ids)
    np.minimum.at(smallest, component, np.arange(n_ids))
    for doc in documents:
        doc.group_id = int(smallest[component[doc.doc_id]])


def read_m4_file(builder: _CorpusBuilder, path: Path, domain: str, generator: str) -> FileReport:
    report = FileReport(path=str(path), kind="m4", domain=domain, generator=generator)
    file = report.path  # one string shared by every source of the file
    for line, row in iter_jsonl(path, report):
        indices = []
        for role, label, text, key, problem in m4_row_texts(row):
            if problem:
                report.skip(line, f"{role}_text_{problem}")
                continue
            doc_generator = HUMAN_GENERATOR if label == HUMAN else generator
            indices.append(builder.add(text, label, domain, doc_generator, {"file": file, "line": line, "field": key}))
        report.used += bool(indices)
        report.documents += len(indices)
        if len(indices) == 2:
            builder.row_links.append(tuple(indices))
    return report


def check_reddit_file(path: Path) -> None:
    """The Reddit file exists and can be read as it is (not a directory, unreadable or compressed)."""
    if not os.path.lexists(path):  # worded as the guide's troubleshooting table quotes it
        raise UserError(f"Reddit file not found: {path} (set --reddit_file, or --reddit_file none)")
    open_input(path).close()


def read_reddit_file(builder: _CorpusBuilder, path: Path) -> FileReport:
    """Posts of a Reddit file (JSONL, or CSV with a text/body column); a row without a label is human. The file's
    report names the domains its posts have (see REDDIT_DOMAIN)."""
    report = FileReport(path=str(path), kind="reddit")
    file = report.path  # one string shared by every source of the file
    domains = set()
    for line, row in iter_rows(path, report):
        text, key, problem = extract_text(row, TEXT_FIELDS)
        if problem:
            report.skip(line, f"text_{problem}")
            continue
        label = parse_label(row.get("label"), missing=HUMAN)
        if label is None:
            report.skip(line, "label_invalid")
            continue
        domain = row["source"] if isinstance(row.get("source"), str) and row["source"] else REDDIT_DOMAIN
        generator = HUMAN_GENERATOR if label == HUMAN else "unknown"
        builder.add(text, label, domain, generator, {"file": file, "line": line, "field": key})
        domains.add(domain)
        report.used += 1
        report.documents += 1
    report.domain = ", ".join(sorted(domains)) or None
    return report


def load_corpus(
    data_dir: str | Path,
    domains: list[str],
    generators: list[str],
    reddit_file: str | Path | None,
    normalization: TextNormalization,
    warn_missing: bool = True,
    must_match: Sequence[RequestedNames] | None = None,
) -> Corpus:
    """Read every selected M4 file and the Reddit file into one de-duplicated, grouped corpus."""
    builder = _CorpusBuilder(normalization)
    selected = find_m4_files(Path(data_dir), domains, generators, warn_missing, must_match)
    files = [read_m4_file(builder, p, d, g) for p, d, g in selected]
    if reddit_file:
        reddit_path = Path(reddit_file)
        check_reddit_file(reddit_path)
        reddit = read_reddit_file(builder, reddit_path)
        if not reddit.used:
            problem = f"no usable post in {counted(reddit.rows, 'row')} (skipped: {dict(reddit.skipped)})"
            problem = problem if reddit.rows else "holds no posts (no rows)"
            raise UserError(f"{reddit_path}: {problem}; fix the file or pass --reddit_file none")
        if clash := " ".join(sorted(set(reddit.domain.split(", ")) & {domain for _, domain, _ in selected})):
            message = "%s: posts whose source is %s join that M4 domain (give them their own source, e.g. %s)"
            logger.warning(message, reddit_path, clash, REDDIT_DOMAIN)
        files.append(reddit)
    for report in files:
        rows, documents = counted(report.rows, "row"), counted(report.documents, "document")
        skipped = f", skipped {dict(report.skipped)}" if report.skipped else ""
        logger.info("%s: %s, %d used, %s%s", report.path, rows, report.used, documents, skipped)
    corpus = builder.build(files)
    corpus.ignored_files = ignored_m4_files(Path(data_dir), {Path(r.path).resolve() for r in files}, domains)
    if not corpus.documents:
        raise UserError("no usable rows in the selected files: " + ", ".join(r.path for r in files))
    documents, duplicates = counted(len(corpus.documents), "document"), counted(corpus.duplicates_removed, "duplicate")
    groups = counted(len({doc.group_id for doc in corpus.documents}), "group")
    logger.info("Loaded %s (%s merged, %s)", documents, duplicates, groups)
    return corpus


# ----------------------------------------------------------------------------------------------- documents to score


def detect_format(source: str, head: bytes) -> str:
    """The format of a file by its suffix; of stdin, or a file whose suffix says nothing, by how it starts (`{` a
    JSONL file, `[{` or `[]` a JSON array of objects, anything else text: "[Verse 1] ..." is a text)."""
    suffix = Path(source).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first = start[:1]
    if (suffix == ".json" and first == b"[") or (suffix != ".txt" and _JSON_ARRAY_START.match(start)):
        return "json_array"
    if suffix in (".jsonl", ".json", ".ndjson") or (suffix != ".txt" and first == b"{"):
        return "jsonl"
    return "txt"


def iter_json_array(source: IO[bytes], report: FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based position, object) for each item of a JSON array; count the items that are not objects."""
    items, problem = parse_json_line(source.read().removeprefix(b"\xef\xbb\xbf"), objects_only=False)
    if problem or not isinstance(items, list):
        raise UserError(f"{report.path}: starts with '[' but is not a JSON array ({problem or 'not a list'})")
    for position, item in enumerate(items, start=1):
        report.rows += 1
        if isinstance(item, dict):
            yield position, item
        else:
            report.skip(position, "not_a_json_object")


def _scoring_rows(rows: Iterable[tuple[int, dict[str, Any]]], report: FileReport, m4_names: tuple[str, str] | None):
    """Documents of plain rows ({"text", ...}: one each) and of M4 rows (human_text/machine_text: two each)."""
    for line, row in rows:
        if "human_text" in row or "machine_text" in row:
            yield from _m4_row_documents(line, row, report, m4_names)
            continue
        text, _, problem = extract_text(row, TEXT_FIELDS)
        if problem:
            report.skip(line, f"text_{problem}")
            continue
        report.used += 1
        document = {"id": row["id"] if row.get("id") not in (None, "") else line, "text": text, "line": line}
        if row.get("label") not in (None, ""):
            document["input_label"] = row["label"]
        for key in PASSTHROUGH_FIELDS + RAID_EXTRA_FIELDS:
            value = row.get(key)
            if value in (None, "") and key in FIELD_ALIASES:
                value = row.get(FIELD_ALIASES[key])
            if value not in (None, ""):
                document[key] = value
        yield document


def _m4_row_documents(line: int, row: dict[str, Any], report: FileReport, m4_names: tuple[str, str] | None):
    base = next((row[key] for key in ID_FIELDS if row.get(key) is not None), line)
    domain, generator = m4_names or (
        row.get("source", "unknown"),
        canonical_generator(str(row.get("model", "unknown"))),
    )
    texts = list(m4_row_texts(row))
    if all(problem for *_, problem in texts):
        report.skip(line, "no_text")
        return
    report.used += 1
    for role, label, text, _, problem in texts:
        if problem:
            report.skip(line, f"{role}_text_{problem}")
            continue
        yield {
            "id": f"{base}/{role}",
            "text": text,
            "line": line,
            "input_label": label,
            "domain": domain,
            "generator": HUMAN_GENERATOR if label == HUMAN else generator,
            "corpus": M4_CORPUS,
        }


def read_documents(
    source: str,
    input_format: str,
    normalization: TextNormalization,
    domains: list[str] | None = None,
    generators: list[str] | None = None,
    reddit_file: str | None = None,
    normalize: bool = True,
    must_match: Sequence[RequestedNames] | None = None,
    labels_required: bool = False,
) -> tuple[pd.DataFrame, FileReport | None]:
    """The documents to score in `source` (a file, '-' for stdin, or an M4 data directory), texts normalised.

    One row per document: `id`, `text` and, where the input has them, `input_label`, `domain`, `generator`,
    `corpus`; and the file's report of skipped rows (None for an M4 directory, read exactly as train.py reads it).
    `normalize=False` keeps a file's texts as written (an M4 directory's are always normalised: its de-duplication
    compares normalised texts). A RAID CSV must have the columns its documents need, and `model` when
    `labels_required`.
    """
    if input_format == "m4_dir" or (input_format == "auto" and source != "-" and Path(source).is_dir()):
        if not domains or not generators:
            raise UserError(
                "an M4 data directory needs --domains and --generators (or a training_config.json with them)"
            )
        corpus = load_corpus(source, domains, generators, reddit_file, normalization, must_match=must_match)
        rows = [(d.doc_id, d.label, d.domain, d.generator, corpus.corpus_name(d), d.text) for d in corpus.documents]
        return pd.DataFrame(rows, columns=["id", "input_label", "domain", "generator", "corpus", "text"]), None
    if source == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        name, stream = "<stdin>", io.BytesIO(stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8"))
    else:
        name, stream = str(Path(source)), open_input(Path(source))
    with stream:
        head = stream.read(1000)
        stream.seek(0)
        check_not_compressed(name, head)
        kind = detect_format(source, head) if input_format == "auto" else input_format
        report = FileReport(path=name, kind="input")
        if kind == "txt":
            try:
                content = stream.read().decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise UserError(f"{name}: not UTF-8 text (byte {error.start})") from error
            rows = [{"id": Path(name).stem if source != "-" else "stdin", "text": content, "line": 1}]
            rows = rows if content.strip() else []
            report.rows = report.used = len(rows)
        else:
            reader = {
                "csv": partial(iter_csv, raid=None, labels_required=labels_required),
                "raid": partial(iter_csv, raid=True, labels_required=labels_required),
                "json_array": iter_json_array,
            }.get(kind, iter_jsonl)
            m4_names = parse_m4_filename(Path(name)) if source != "-" else None
            rows = list(_scoring_rows(reader(stream, report), report, m4_names))
    return _documents_frame(rows, report, normalize, normalization), report


def read_objects(
    objects: Sequence[dict[str, Any]], name: str, normalization: TextNormalization, normalize: bool = True
) -> tuple[pd.DataFrame, FileReport]:
    """`read_documents` of JSON objects held in memory (the HTTP API's items), read as the lines of a JSONL file
    named `name`: an object's line is its position from 1."""
    report = FileReport(path=name, kind="input", rows=len(objects))

    def numbered() -> Iterator[tuple[int, dict[str, Any]]]:
        for line, row in enumerate(objects, start=1):
            if has_lone_surrogate(row):  # as parse_json_line skips such a line
                report.skip(line, "lone_surrogate")
            else:
                yield line, row

    return _documents_frame(list(_scoring_rows(numbered(), report, None)), report, normalize, normalization), report


def _documents_frame(
    rows: list[dict[str, Any]], report: FileReport, normalize: bool, normalization: TextNormalization
) -> pd.DataFrame:
    if not rows:
        if not report.rows:
            raise UserError(f"{report.path}: empty input, nothing to score")
        skipped = dict(report.skipped)
        raise UserError(f"{report.path}: no usable document in {counted(report.rows, 'row')} (skipped: {skipped})")
    report.documents = len(rows)
    if normalize:
        for row in rows:  # in place: each raw text is freed as its normalised text arrives, never both sets at once
            row["text"] = normalize_text(row["text"], normalization)
    frame = pd.DataFrame(rows, dtype=object)  # ids and labels pass through as given (no int -> float)
    frame["text"] = frame["text"].tolist()  # pandas' own string column, as for any list of texts
    return frame


def labels_of(frame: pd.DataFrame, required: bool = True) -> pd.Series:
    """The input labels (`input_label` as read) as 0/1. Required (evaluation): a document without one, or with a
    value that is not 0/1 or human/machine, stops the run; otherwise such a document's label is <NA>."""
    given = frame["input_label"] if "input_label" in frame.columns else pd.Series(None, index=frame.index)
    labels = pd.Series([parse_label(value) for value in given], index=frame.index, dtype="Int64")
    invalid = labels.isna() & given.notna()
    if required and given.isna().any():
        unlabelled = frame["id"][given.isna()].tolist()[:3]
        raise UserError(f"every document needs a label (0/1 or human/machine); none for ids {unlabelled}")
    if invalid.any():
        doc_id, value = frame["id"][invalid].iloc[0], given[invalid].iloc[0]
        if required:
            raise UserError(f"document {doc_id}: label {value!r} is not 0/1 or human/machine")
        documents = counted(int(invalid.sum()), "document")
        message = "Labels that are not 0/1 or human/machine, read as unlabelled: %s (document %s: %r)"
        logger.warning(message, documents, doc_id, value)
    return labels
