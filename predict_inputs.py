"""Documents to score, read from the input kinds predict.py accepts.

Every reader returns one row per document: `id`, `text` (normalised as at training), and where the input has
them `input_label`, `domain`, `generator`, `corpus`. A row that cannot become a document stops the run with
its file and line, because predictions must cover every input row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

import data_loaders
from errors import UserError
from evaluation_report import M4_CORPUS, documents_frame

logger = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "jsonl", "csv", "txt", "m4_dir")
PASSTHROUGH_FIELDS = ("domain", "generator")
M4_ID_FIELDS = ("id", "source_ID", "source_id")
LABEL_VALUES = {"0": 0, "1": 1, "human": 0, "machine": 1}


def detect_format(source: str, head: str = "") -> str:
    if source != "-" and Path(source).is_dir():
        return "m4_dir"
    suffix = Path(source).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if source == "-":
        return "jsonl" if head.lstrip().startswith("{") else "txt"
    return "txt"


def _text_or_fail(row: dict[str, Any], where: str) -> str:
    """The row's `text` (list-valued texts joined, as in training); a row without one stops the run."""
    text, _, problem = data_loaders.extract_text(row, ("text",))
    if problem:
        raise UserError(f"{where}: no usable 'text' ({problem}); every row needs a text to score")
    return text


def _jsonl_rows(name: str, content: str) -> list[dict[str, Any]]:
    """Plain rows ({"text", ...}) give one document; M4 rows (human_text/machine_text) give two."""
    m4_names = data_loaders.parse_m4_filename(Path(name)) if name != "<stdin>" else None
    documents: list[dict[str, Any]] = []
    skipped = Counter()
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{line_number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{where}: not valid JSON ({error.msg})") from error
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "human_text" in row or "machine_text" in row:
            documents += _m4_row_documents(row, where, line_number, m4_names, skipped)
            continue
        document = {"id": row.get("id", line_number), "text": _text_or_fail(row, where)}
        if "label" in row:
            document["input_label"] = row["label"]
        documents.append(document | {k: row[k] for k in PASSTHROUGH_FIELDS if k in row})
    if skipped:
        logger.warning("%s: skipped empty halves of M4 rows: %s", name, dict(skipped))
    return documents


def _m4_row_documents(
    row: dict[str, Any], where: str, line_number: int, m4_names: tuple[str, str] | None, skipped: Counter
) -> list[dict[str, Any]]:
    """An M4 row's human and machine texts; an empty half (real M4 files have some) is skipped and counted."""
    base = next((row[key] for key in M4_ID_FIELDS if row.get(key) is not None), line_number)
    domain, generator = m4_names or (row.get("source", "unknown"), str(row.get("model", "unknown")))
    machine_generator = data_loaders.canonical_generator(generator)
    documents = []
    for role, label, fields in (
        ("human", 0, data_loaders.HUMAN_TEXT_FIELDS),
        ("machine", 1, data_loaders.MACHINE_TEXT_FIELDS),
    ):
        text, _, problem = data_loaders.extract_text(row, fields)
        if problem:
            skipped[f"{role}_text_{problem}"] += 1
            continue
        documents.append(
            {
                "id": f"{base}/{role}",
                "text": text,
                "input_label": label,
                "domain": domain,
                "generator": data_loaders.HUMAN_GENERATOR if label == 0 else machine_generator,
                "corpus": M4_CORPUS,
            }
        )
    if not documents:
        raise UserError(f"{where}: M4 row has neither a human nor a machine text")
    return documents


def _csv_rows(name: str, content: str) -> list[dict[str, Any]]:
    separator = "\t" if name.lower().endswith(".tsv") else ","
    try:
        table = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False, sep=separator)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        raise UserError(f"{name}: not a readable CSV file ({str(error).strip() or type(error).__name__})") from error
    if "text" not in table.columns:
        raise UserError(f"{name}: no 'text' column (columns: {', '.join(map(str, table.columns))})")
    documents = []
    for position, row in enumerate(table.to_dict("records"), start=1):
        where = f"{name}: row {position} after the header"
        document = {"id": row.get("id") or position, "text": _text_or_fail(row, where)}
        if row.get("label", "") != "":
            document["input_label"] = row["label"]
        documents.append(document | {k: row[k] for k in PASSTHROUGH_FIELDS if row.get(k, "") != ""})
    return documents


def _read_source(source: str) -> tuple[str, str]:
    """(name for messages, content) of a file or of stdin."""
    if source == "-":
        return "<stdin>", sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"input not found: {source}")
    try:
        return str(path), path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start})") from error


def read_documents(
    source: str,
    input_format: str,
    normalize_digits: bool,
    domains: list[str] | None = None,
    generators: list[str] | None = None,
    reddit_file: str | None = None,
) -> pd.DataFrame:
    """The documents of `source` (a file, '-' for stdin, or an M4 data directory), texts normalised."""
    if input_format == "m4_dir" or (input_format == "auto" and source != "-" and Path(source).is_dir()):
        return _m4_dir_documents(source, domains, generators, reddit_file, normalize_digits)
    name, content = _read_source(source)
    kind = detect_format(source, content[:1000]) if input_format == "auto" else input_format
    if not content.strip():
        raise UserError(f"{name}: empty input, nothing to score")
    if kind == "jsonl":
        rows = _jsonl_rows(name, content)
    elif kind == "csv":
        rows = _csv_rows(name, content)
    else:
        rows = [{"id": Path(name).stem if source != "-" else "stdin", "text": content}]
    if not rows:
        raise UserError(f"{name}: no documents to score")
    frame = pd.DataFrame(rows, dtype=object)  # ids and labels pass through as given (no int -> float)
    frame["text"] = [data_loaders.normalize_text(text, normalize_digits) for text in frame["text"]]
    return frame


def _m4_dir_documents(
    data_dir: str,
    domains: list[str] | None,
    generators: list[str] | None,
    reddit_file: str | None,
    normalize_digits: bool,
) -> pd.DataFrame:
    """An M4 data directory read exactly as train.py reads it (same files, cleaning and de-duplication)."""
    if not domains or not generators:
        raise UserError("an M4 data directory needs --domains and --generators (or a training_config.json with them)")
    corpus = data_loaders.load_corpus(data_dir, domains, generators, reddit_file, normalize_digits)
    frame = documents_frame(corpus.documents, corpus).rename(columns={"doc_id": "id", "label": "input_label"})
    frame["text"] = [doc.text for doc in corpus.documents]
    return frame


def parse_labels(frame: pd.DataFrame) -> pd.Series:
    """The input labels as 0/1 (accepts 0/1, "0"/"1", "human"/"machine"), for --eval."""
    if "input_label" not in frame.columns or frame["input_label"].isna().any():
        unlabelled = frame["id"][frame.get("input_label", pd.Series(index=frame.index)).isna()].tolist()[:3]
        raise UserError(f"--eval needs a label for every document; none for ids {unlabelled}")
    labels = []
    for doc_id, value in zip(frame["id"], frame["input_label"]):
        label = _label_value(value)
        if label is None:
            raise UserError(f"document {doc_id}: label {value!r} is not 0/1 or human/machine")
        labels.append(label)
    return pd.Series(labels, index=frame.index, dtype="int64")


def _label_value(value: Any) -> int | None:
    if isinstance(value, str):
        return LABEL_VALUES.get(value.strip().lower())
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    return None
