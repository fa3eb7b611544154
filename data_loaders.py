"""Read M4 and Reddit files into documents, clean and de-duplicate them, group them and split them.

Every row that does not become a document is counted by reason in its file's `FileReport`, so the run's
`data_report.json` can say where each row went.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from errors import UserError

logger = logging.getLogger(__name__)

HUMAN, MACHINE = 0, 1
LABEL_NAMES = {HUMAN: "human", MACHINE: "machine"}
HUMAN_GENERATOR = "human"
# Spellings used by different M4 releases for the same generator.
GENERATOR_ALIASES = {"dolly2": "dolly", "flan-t5": "flant5", "gpt-3.5-turbo": "chatgpt"}
HUMAN_TEXT_FIELDS = ("human_text", "text")
MACHINE_TEXT_FIELDS = ("machine_text",)
REDDIT_TEXT_FIELDS = ("text", "body")
MAX_LOGGED_SKIPS_PER_REASON = 5  # per file; every skip is counted in data_report.json

_DIGIT = re.compile(r"\d")


def normalize_text(text: str, normalize_digits: bool) -> str:
    """The one normalisation shared by training, evaluation and prediction.

    Whitespace runs become one space: M4's human arXiv abstracts keep the source's hard line breaks while
    the machine texts do not, and a detector should not learn that formatting artefact. Digits optionally
    become 0 so that numbers do not act as a shortcut.
    """
    text = " ".join(text.split())  # the same Unicode whitespace as the regex \s, three times faster
    return _DIGIT.sub("0", text) if normalize_digits else text


def canonical_generator(name: str) -> str:
    name = name.strip().lower()
    return GENERATOR_ALIASES.get(name, name)


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
    path: str
    kind: str  # "m4" or "reddit"
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
        return {
            "path": self.path,
            "kind": self.kind,
            "domain": self.domain,
            "generator": self.generator,
            "rows": self.rows,
            "used": self.used,
            "documents": self.documents,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_lines": dict(sorted(self.skipped_lines.items())),
        }


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


# ----------------------------------------------------------------------------------------------- reading


def iter_jsonl(path: Path, report: FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, row) for each JSON object in the file; count the lines that are not."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            report.rows += 1
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                report.skip(line_number, "invalid_utf8")
                continue
            except json.JSONDecodeError:
                report.skip(line_number, "malformed_json")
                continue
            if not isinstance(row, dict):
                report.skip(line_number, "not_a_json_object")
                continue
            yield line_number, row


def extract_text(row: dict[str, Any], fields: tuple[str, ...]) -> tuple[str | None, str, str | None]:
    """Return (text, field it came from, skip reason). List-valued texts (peerread) are joined."""
    key = next((name for name in fields if name in row), None)
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


def parse_label(value: Any) -> int | None:
    """Accept 0/1 as int, float or string; None means the Reddit default (human)."""
    if value is None:
        return HUMAN
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number in (0.0, 1.0) else None


def parse_m4_filename(path: Path) -> tuple[str, str] | None:
    """`<domain>_<generator>.jsonl` -> (domain, canonical generator); domains may contain '-' but not '_'."""
    domain, sep, generator = path.stem.rpartition("_")
    if not sep or not domain or not generator:
        return None
    return domain.lower(), canonical_generator(generator)


def find_m4_files(data_dir: Path, domains: list[str], generators: list[str]) -> list[tuple[Path, str, str]]:
    """The M4 files for the requested domains and generators, matched case-insensitively and by alias."""
    if not data_dir.is_dir():
        raise UserError(f"M4 data directory not found: {data_dir} (set --data_dir)")
    available = [(p, *parsed) for p in sorted(data_dir.glob("*.jsonl")) if (parsed := parse_m4_filename(p))]
    if not available:
        raise UserError(f"no <domain>_<generator>.jsonl files in {data_dir}")
    wanted_domains = {d.lower() for d in domains}
    wanted_generators = {canonical_generator(g) for g in generators}
    selected = [(p, d, g) for p, d, g in available if d in wanted_domains and g in wanted_generators]
    if not selected:
        found = ", ".join(sorted(p.name for p, _, _ in available))
        raise UserError(
            f"no M4 file in {data_dir} matches --train_domains {' '.join(domains)} and "
            f"--train_generators {' '.join(generators)}; files there: {found}"
        )
    missing = sorted(
        f"{d}_{g}"
        for d in wanted_domains
        for g in wanted_generators
        if not any(sd == d and sg == g for _, sd, sg in selected)
    )
    if missing:
        logger.warning("No M4 file for %d requested domain/generator pairs: %s", len(missing), ", ".join(missing))
    return selected


def ignored_m4_files(data_dir: Path, read: set[Path], domains: list[str]) -> list[dict[str, str]]:
    """The .jsonl files in data_dir that the run does not read, each with the reason (logged and reported)."""
    wanted_domains = {d.lower() for d in domains}
    ignored = []
    for path in sorted(data_dir.glob("*.jsonl")):
        if path.resolve() in read:
            continue
        parsed = parse_m4_filename(path)
        if parsed is None:
            reason = "name is not <domain>_<generator>.jsonl"
        elif parsed[0] not in wanted_domains:
            reason = f"domain {parsed[0]} not in --train_domains"
        else:
            reason = f"generator {parsed[1]} not in --train_generators"
        ignored.append({"path": str(path), "reason": reason})
    if ignored:
        logger.info(
            "Not reading %d files in %s: %s",
            len(ignored),
            data_dir,
            "; ".join(f"{Path(entry['path']).name} ({entry['reason']})" for entry in ignored),
        )
    return ignored


# ----------------------------------------------------------------------------------------------- corpus


class _CorpusBuilder:
    """Collects documents, merging identical texts and remembering which documents came from one row."""

    def __init__(self, normalize_digits: bool) -> None:
        self.normalize_digits = normalize_digits
        self.documents: list[Document] = []
        self.index_by_text: dict[str, int] = {}
        self.conflicting: set[int] = set()
        self.row_links: list[tuple[int, int]] = []
        self.duplicates_removed = 0

    def add(self, text: str, label: int, domain: str, generator: str, source: dict[str, Any]) -> int:
        text = normalize_text(text, self.normalize_digits)
        index = self.index_by_text.get(text)
        if index is None:
            index = len(self.documents)
            self.index_by_text[text] = index
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
            logger.warning(
                "Dropped %d texts (%d occurrences) that appear both as human and as machine text",
                len(self.conflicting),
                conflicting_occurrences,
            )
        assign_groups(keep, [link for link in self.row_links if not self.conflicting.intersection(link)])
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


def assign_groups(documents: list[Document], links: list[tuple[int, int]]) -> None:
    """Union the documents of each M4 row; a group's id is the smallest doc_id in it."""
    parent = {doc.doc_id: doc.doc_id for doc in documents}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    for doc in documents:
        doc.group_id = root(doc.doc_id)


def read_m4_file(builder: _CorpusBuilder, path: Path, domain: str, generator: str) -> FileReport:
    report = FileReport(path=str(path), kind="m4", domain=domain, generator=generator)
    for line, row in iter_jsonl(path, report):
        indices = []
        for role, label, fields, doc_generator in (
            ("human", HUMAN, HUMAN_TEXT_FIELDS, HUMAN_GENERATOR),
            ("machine", MACHINE, MACHINE_TEXT_FIELDS, generator),
        ):
            text, key, problem = extract_text(row, fields)
            if problem:
                report.skip(line, f"{role}_text_{problem}")
                continue
            source = {"file": str(path), "line": line, "field": key}
            indices.append(builder.add(text, label, domain, doc_generator, source))
        if indices:
            report.used += 1
            report.documents += len(indices)
        if len(indices) == 2:
            builder.row_links.append((indices[0], indices[1]))
    return report


def read_reddit_file(builder: _CorpusBuilder, path: Path) -> FileReport:
    report = FileReport(path=str(path), kind="reddit", domain="reddit_posts")
    for line, row in iter_jsonl(path, report):
        text, key, problem = extract_text(row, REDDIT_TEXT_FIELDS)
        if problem:
            report.skip(line, f"text_{problem}")
            continue
        label = parse_label(row.get("label"))
        if label is None:
            report.skip(line, "label_invalid")
            continue
        domain = row["source"] if isinstance(row.get("source"), str) and row["source"] else "reddit_posts"
        generator = HUMAN_GENERATOR if label == HUMAN else "unknown"
        builder.add(text, label, domain, generator, {"file": str(path), "line": line, "field": key})
        report.used += 1
        report.documents += 1
    return report


def load_corpus(
    data_dir: str | Path,
    domains: list[str],
    generators: list[str],
    reddit_file: str | Path | None,
    normalize_digits: bool,
) -> Corpus:
    """Read every selected M4 file and the Reddit file into one de-duplicated, grouped corpus."""
    builder = _CorpusBuilder(normalize_digits)
    files = [read_m4_file(builder, p, d, g) for p, d, g in find_m4_files(Path(data_dir), domains, generators)]
    if reddit_file:
        reddit_path = Path(reddit_file)
        if not reddit_path.is_file():
            raise UserError(f"Reddit file not found: {reddit_path} (set --reddit_file, or --reddit_file none)")
        files.append(read_reddit_file(builder, reddit_path))
    for report in files:
        logger.info(
            "%s: %d rows, %d used, %d documents%s",
            report.path,
            report.rows,
            report.used,
            report.documents,
            f", skipped {dict(report.skipped)}" if report.skipped else "",
        )
    corpus = builder.build(files)
    corpus.ignored_files = ignored_m4_files(Path(data_dir), {Path(r.path).resolve() for r in files}, domains)
    if not corpus.documents:
        raise UserError("no usable rows in the selected files: " + ", ".join(r.path for r in files))
    logger.info(
        "Loaded %d documents (%d duplicates merged, %d groups)",
        len(corpus.documents),
        corpus.duplicates_removed,
        len({doc.group_id for doc in corpus.documents}),
    )
    return corpus


# ----------------------------------------------------------------------------------------------- splits


@dataclass
class Split:
    train: list[Document]
    val: list[Document]
    dropped: Counter = field(default_factory=Counter)
    dropped_documents: list[tuple[str, Document]] = field(default_factory=list)
    flow: str = "stratified"

    def drop(self, document: Document, reason: str) -> None:
        self.dropped[reason] += 1
        self.dropped_documents.append((reason, document))


def _groups(documents: list[Document]) -> dict[int, list[Document]]:
    groups: dict[int, list[Document]] = defaultdict(list)
    for doc in documents:
        groups[doc.group_id].append(doc)
    return dict(sorted(groups.items()))


def check_validation_split(validation_split: float) -> None:
    if not 0.0 < validation_split < 1.0:
        raise UserError(f"--validation_split must be between 0 and 1 (exclusive), got {validation_split}")


def check_reddit_val_fraction(reddit_val_fraction: float) -> None:
    if not 0.0 <= reddit_val_fraction < 1.0:
        raise UserError(f"--reddit_val_fraction must be in [0, 1), got {reddit_val_fraction}")


def stratified_group_split(documents: list[Document], validation_split: float, seed: int) -> Split:
    """Whole groups go to one side; within each domain the validation side gets its share of each label.

    Groups are visited in a seeded random order and a group joins validation when that brings the
    domain's (human, machine) validation counts closer to their targets.
    """
    check_validation_split(validation_split)
    rng = random.Random(seed)
    groups_by_domain: dict[str, list[list[Document]]] = defaultdict(list)
    for members in _groups(documents).values():
        groups_by_domain[members[0].domain].append(members)
    val_group_ids: set[int] = set()
    for domain in sorted(groups_by_domain):
        groups = groups_by_domain[domain]
        rng.shuffle(groups)
        totals = Counter(doc.label for members in groups for doc in members)
        target = {label: validation_split * totals[label] for label in (HUMAN, MACHINE)}
        taken = Counter()
        for members in groups:
            counts = Counter(doc.label for doc in members)
            before = sum(abs(taken[k] - target[k]) for k in target)
            after = sum(abs(taken[k] + counts[k] - target[k]) for k in target)
            if after < before:
                taken.update(counts)
                val_group_ids.add(members[0].group_id)
    train = [doc for doc in documents if doc.group_id not in val_group_ids]
    val = [doc for doc in documents if doc.group_id in val_group_ids]
    return Split(train=train, val=val, flow="stratified")


def generator_holdout_split(
    corpus: Corpus, val_generator: str, validation_split: float, reddit_val_fraction: float, seed: int
) -> Split:
    """Validate on a generator never seen in training; see TRAINING_GUIDE_COMPLETE.md for the rules."""
    check_validation_split(validation_split)
    check_reddit_val_fraction(reddit_val_fraction)
    val_generator = canonical_generator(val_generator)
    found = corpus.generators_by_domain
    if not any(val_generator in gens for gens in found.values()):
        listing = "; ".join(f"{d}: {', '.join(g)}" for d, g in found.items()) or "none"
        raise UserError(
            f"--val_generator {val_generator} is not in the loaded data (add it to --train_generators, or pick "
            f"one of the generators found per domain: {listing})"
        )
    rng = random.Random(seed)
    groups = _groups(corpus.documents)
    m4_group_ids = [gid for gid, members in groups.items() if any(corpus.from_m4(doc) for doc in members)]
    # Per domain, so every domain is represented in validation as it is in the data.
    val_group_ids: set[int] = set()
    for domain in sorted({groups[gid][0].domain for gid in m4_group_ids}):
        in_domain = [gid for gid in m4_group_ids if groups[gid][0].domain == domain]
        candidates = [gid for gid in in_domain if any(d.generator == val_generator for d in groups[gid])]
        n_val_groups = max(1, round(validation_split * len(in_domain)))
        val_group_ids.update(rng.sample(candidates, n_val_groups) if len(candidates) > n_val_groups else candidates)

    split = Split(train=[], val=[], flow="generator_holdout")
    for gid in m4_group_ids:
        for doc in groups[gid]:
            is_val_generator = doc.generator == val_generator
            if gid in val_group_ids:
                if doc.label == HUMAN or is_val_generator:
                    split.val.append(doc)
                else:
                    split.drop(doc, "other_generator_in_validation_group")
            elif is_val_generator:
                split.drop(doc, "val_generator_in_training_group")
            else:
                split.train.append(doc)
    m4_group_set = set(m4_group_ids)
    reddit_group_ids = [gid for gid in groups if gid not in m4_group_set]
    rng.shuffle(reddit_group_ids)
    n_reddit_val = round(reddit_val_fraction * len(reddit_group_ids))
    for position, gid in enumerate(reddit_group_ids):
        (split.val if position < n_reddit_val else split.train).extend(groups[gid])
    split.train.sort(key=lambda doc: doc.doc_id)
    split.val.sort(key=lambda doc: doc.doc_id)
    return split


def sample_groups(documents: list[Document], max_documents: int | None, seed: int) -> list[Document]:
    """At most `max_documents` documents, drawn as whole groups in a seeded order."""
    if max_documents is None or len(documents) <= max_documents:
        return documents
    groups = list(_groups(documents).values())
    random.Random(seed).shuffle(groups)
    chosen: set[int] = set()
    total = 0
    for members in groups:
        if total + len(members) <= max_documents:
            chosen.add(members[0].group_id)
            total += len(members)
    return [doc for doc in documents if doc.group_id in chosen]


def split_corpus(
    corpus: Corpus,
    stratified: bool,
    validation_split: float,
    val_generator: str,
    reddit_val_fraction: float,
    seed: int,
    max_train_samples: int | None = None,
    max_val_samples: int | None = None,
) -> Split:
    """Split into train/val (grouped, leak-free), then sample the requested number of documents."""
    if stratified:
        split = stratified_group_split(corpus.documents, validation_split, seed)
    else:
        split = generator_holdout_split(corpus, val_generator, validation_split, reddit_val_fraction, seed)
    split.train = sample_groups(split.train, max_train_samples, seed)
    split.val = sample_groups(split.val, max_val_samples, seed + 1)
    if not split.train or not split.val:
        raise UserError(
            f"the {split.flow} split left {len(split.train)} training and {len(split.val)} validation documents; "
            "both need at least one (check --validation_split and the --max_*_samples flags)"
        )
    train_labels = Counter(doc.label for doc in split.train)
    if len(train_labels) < 2:
        (only,) = train_labels
        raise UserError(
            f"the training split has only {LABEL_NAMES[only]} documents ({train_labels[only]}); a detector needs "
            "both human and machine texts (check --train_domains, --train_generators and the files' text fields)"
        )
    if len({doc.label for doc in split.val}) < 2:
        logger.warning("The validation split has one class only: AUROC and F1 are undefined")
    return split


def group_overlap(split: Split) -> int:
    """Number of groups with documents on both sides (0 for every split this module makes)."""
    return len({doc.group_id for doc in split.train} & {doc.group_id for doc in split.val})
