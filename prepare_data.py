"""Prepare training files: clean a raw M4 directory, or turn a Reddit dump into the Reddit training file.

    python prepare_data.py m4 --input_dir M4/data --output_dir M4_cleaned/data
    python prepare_data.py reddit --input reddit_dump.csv --output reddit_training_60k.jsonl --sample_size 60000

Both apply the same `text_cleaning.clean_text` and a minimum length after cleaning, print a table of rows
kept and dropped by reason, and write it as JSON next to the output. Bad lines are counted by reason and
logged with file:line, as train.py does.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import data_loaders
import reports
from errors import UserError, run_cli, setup_cli_logging
from text_cleaning import clean_text

logger = logging.getLogger("prepare_data")

M4_TEXT_FIELDS = data_loaders.HUMAN_TEXT_FIELDS + data_loaders.MACHINE_TEXT_FIELDS
REDDIT_TEXT_FIELDS = ("text", "body", "selftext")
TIMESTAMP_FIELDS = ("timestamp", "created_utc", "created")
ID_FIELDS = ("id", "name")
# ChatGPT's public release: posts written before it are very unlikely to be machine-written.
DEFAULT_CUTOFF = "2022-11-30"
# Deleted or removed Reddit posts keep a placeholder body.
REDDIT_PLACEHOLDERS = {"[deleted]", "[removed]"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{m4,reddit}")

    m4 = commands.add_parser("m4", help="raw M4 directory -> cleaned M4 directory")
    m4.add_argument("--input_dir", required=True, help="directory of raw <domain>_<generator>.jsonl files")
    m4.add_argument("--output_dir", default="M4_cleaned/data", help="where the cleaned files are written")
    m4.add_argument("--min_chars", type=int, default=50, help="drop rows whose human or machine text is shorter")
    m4.add_argument(
        "--report", default=None, help="JSON table of kept/dropped rows (default: OUTPUT_DIR/prepare_report.json)"
    )

    reddit = commands.add_parser("reddit", help="Reddit dump (CSV or JSONL) -> Reddit training file")
    reddit.add_argument("--input", required=True, help="CSV or JSONL with text/body, timestamp and id columns")
    reddit.add_argument("--output", default="reddit_training_60k.jsonl", help="the Reddit training file (JSONL)")
    reddit.add_argument("--cutoff_date", default=DEFAULT_CUTOFF, help="keep posts written before this UTC date")
    reddit.add_argument("--min_chars", type=int, default=50, help="drop posts shorter than this after cleaning")
    reddit.add_argument("--max_per_month", type=int, default=None, help="cap posts per calendar month (seeded)")
    reddit.add_argument("--sample_size", type=int, default=None, help="total posts to keep (seeded; default all)")
    reddit.add_argument("--source", default=None, help="`source` of every post (default: the row's, else reddit)")
    reddit.add_argument("--include_title", action="store_true", help="prepend a `title` column to the body")
    reddit.add_argument("--seed", type=int, default=42)
    reddit.add_argument("--report", default=None, help="JSON table of kept/dropped rows (default: OUTPUT.report.json)")
    return parser


# ----------------------------------------------------------------------------------------------- tables


@dataclass
class FileTable:
    """Rows read, kept and dropped by reason for one input file."""

    path: str
    rows: int = 0
    kept: int = 0
    dropped: Counter | None = None

    def as_dict(self) -> dict[str, Any]:
        dropped = dict(sorted((self.dropped or Counter()).items()))
        return {"path": self.path, "rows": self.rows, "kept": self.kept, "dropped": dropped}


def format_table(tables: list[FileTable]) -> str:
    reasons = sorted({reason for table in tables for reason in (table.dropped or {})})
    header = ["file", "rows", "kept", *reasons]
    lines = [
        [Path(t.path).name, str(t.rows), str(t.kept), *(str((t.dropped or {}).get(r, 0)) for r in reasons)]
        for t in tables
    ]
    total = [
        "TOTAL",
        str(sum(t.rows for t in tables)),
        str(sum(t.kept for t in tables)),
        *(str(sum((t.dropped or {}).get(r, 0) for t in tables)) for r in reasons),
    ]
    rows = [header, *lines, total]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def write_table(tables: list[FileTable], path: Path, settings: dict[str, Any]) -> None:
    reports.write_json(path, {"settings": settings, "files": [t.as_dict() for t in tables]})
    print(format_table(tables))
    logger.info("Table written to %s", path)


# ----------------------------------------------------------------------------------------------- M4


def clean_field(value: Any) -> tuple[Any, str | None]:
    """Clean a text field (a string, or a list of strings joined by the loader); return (value, problem)."""
    if value is None:
        return None, "null"
    if isinstance(value, list):
        items = [clean_text(str(item)) for item in value if item is not None]
        items = [item for item in items if item]
        return items, None if items else "empty"
    if not isinstance(value, str):
        return None, "not_a_string"
    cleaned = clean_text(value)
    return cleaned, None if cleaned else "empty"


def _text_length(value: str | list[str]) -> int:
    return len("\n\n".join(value)) if isinstance(value, list) else len(value)


def clean_m4_row(row: dict[str, Any], min_chars: int) -> str | None:
    """Clean the row's text fields in place; return the reason to drop the row, or None to keep it."""
    for role, fields in (("human", data_loaders.HUMAN_TEXT_FIELDS), ("machine", data_loaders.MACHINE_TEXT_FIELDS)):
        present = [name for name in fields if name in row]
        if not present:
            return f"{role}_text_missing"
        for name in present:
            cleaned, problem = clean_field(row[name])
            if problem:
                return f"{role}_text_{problem}"
            if _text_length(cleaned) < min_chars:
                return f"{role}_text_too_short"
            row[name] = cleaned
    return None


def _cleaned_m4_rows(
    path: Path, report: data_loaders.FileReport, table: FileTable, min_chars: int
) -> Iterator[dict[str, Any]]:
    for line, row in data_loaders.iter_jsonl(path, report):
        reason = clean_m4_row(row, min_chars)
        if reason:
            report.skip(line, reason)
            continue
        table.kept += 1
        yield row


def prepare_m4(input_dir: Path, output_dir: Path, min_chars: int) -> list[FileTable]:
    """Clean every `*.jsonl` of `input_dir` into `output_dir` (same file names); rows keep their other keys."""
    if not input_dir.is_dir():
        raise UserError(f"M4 input directory not found: {input_dir}")
    if input_dir.resolve() == output_dir.resolve():
        raise UserError(f"--output_dir must differ from --input_dir ({input_dir}); raw files are never overwritten")
    paths = sorted(input_dir.glob("*.jsonl"))
    if not paths:
        raise UserError(f"no .jsonl files in {input_dir}")
    tables = []
    for path in paths:
        report = data_loaders.FileReport(path=str(path), kind="m4")
        table = FileTable(path=str(path))
        reports.write_jsonl(output_dir / path.name, _cleaned_m4_rows(path, report, table, min_chars))
        table.rows, table.dropped = report.rows, report.skipped
        tables.append(table)
    return tables


# ----------------------------------------------------------------------------------------------- Reddit


def parse_timestamp(value: Any) -> datetime | None:
    """Epoch seconds (int, float or numeric string) or an ISO date/time string -> aware UTC datetime."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def parse_cutoff(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=timezone.utc)
    except ValueError as error:
        raise UserError(f"--cutoff_date must be a date like {DEFAULT_CUTOFF}, got {value!r}") from error


def iter_csv(path: Path, report: data_loaders.FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line where the record starts, row); a record with undecodable bytes is counted, not yielded."""
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        start = reader.line_num + 1
        for row in reader:
            report.rows += 1
            if any("\ufffd" in str(value) for value in row.values()):
                report.skip(start, "invalid_utf8")
            elif None in row:
                report.skip(start, "malformed_csv")
            else:
                yield start, row
            start = reader.line_num + 1


def _first(row: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((row[name] for name in fields if row.get(name) not in (None, "")), None)


@dataclass
class RedditPost:
    line: int
    text: str
    timestamp: datetime
    post_id: str
    source: str


def read_reddit_posts(args: argparse.Namespace, report: data_loaders.FileReport) -> list[RedditPost]:
    """Every clean, long-enough, pre-cut-off, first-seen post of the dump, in file order."""
    path = Path(args.input)
    if not path.is_file():
        raise UserError(f"Reddit dump not found: {path}")
    rows = iter_csv(path, report) if path.suffix.lower() == ".csv" else data_loaders.iter_jsonl(path, report)
    cutoff = parse_cutoff(args.cutoff_date)
    posts: list[RedditPost] = []
    seen_texts: set[str] = set()
    seen_ids: set[str] = set()
    for line, row in rows:
        # CSV dumps have both columns, one of them empty: take the first non-empty one.
        non_empty = {k: v for k, v in row.items() if k in REDDIT_TEXT_FIELDS and v not in ("", None)}
        text, _, problem = data_loaders.extract_text(non_empty or row, REDDIT_TEXT_FIELDS)
        if problem or text.strip() in REDDIT_PLACEHOLDERS:
            report.skip(line, f"text_{problem or 'deleted'}")
            continue
        if args.include_title and str(row.get("title") or "").strip():
            text = f"{row['title']}\n\n{text}"
        text = clean_text(text)
        if len(text) < args.min_chars:
            report.skip(line, "text_too_short")
            continue
        raw_timestamp = _first(row, TIMESTAMP_FIELDS)
        timestamp = parse_timestamp(raw_timestamp)
        if timestamp is None:
            report.skip(line, "timestamp_missing" if raw_timestamp is None else "timestamp_invalid")
            continue
        if timestamp >= cutoff:
            report.skip(line, "after_cutoff")
            continue
        key = data_loaders.normalize_text(text, normalize_digits=True).lower()
        post_id = str(_first(row, ID_FIELDS) or f"{path.stem}-{line}")
        if key in seen_texts or post_id in seen_ids:
            report.skip(line, "duplicate")
            continue
        seen_texts.add(key)
        seen_ids.add(post_id)
        source = args.source or (
            row.get("source") if isinstance(row.get("source"), str) and row["source"] else "reddit"
        )
        posts.append(RedditPost(line, text, timestamp, post_id, source))
    return posts


def sample_posts(
    posts: list[RedditPost],
    max_per_month: int | None,
    sample_size: int | None,
    seed: int,
    report: data_loaders.FileReport,
) -> list[RedditPost]:
    """Cap each calendar month, then draw the total sample; both seeded, and the file order is kept."""
    if max_per_month is not None:
        by_month: dict[str, list[int]] = defaultdict(list)
        for index, post in enumerate(posts):
            by_month[post.timestamp.strftime("%Y-%m")].append(index)
        keep: set[int] = set()
        for month, indices in sorted(by_month.items()):
            chosen = random.Random(f"{seed}-{month}").sample(indices, min(max_per_month, len(indices)))
            keep.update(chosen)
            for index in set(indices) - set(chosen):
                report.skip(posts[index].line, "over_month_cap")
        posts = [post for index, post in enumerate(posts) if index in keep]
    if sample_size is not None and len(posts) > sample_size:
        chosen = set(random.Random(seed).sample(range(len(posts)), sample_size))
        for index, post in enumerate(posts):
            if index not in chosen:
                report.skip(post.line, "over_sample_size")
        posts = [post for index, post in enumerate(posts) if index in chosen]
    return posts


def prepare_reddit(args: argparse.Namespace) -> list[FileTable]:
    report = data_loaders.FileReport(path=str(args.input), kind="reddit")
    posts = sample_posts(read_reddit_posts(args, report), args.max_per_month, args.sample_size, args.seed, report)
    if not posts:
        raise UserError(f"no post of {args.input} passed the filters: {dict(report.skipped)}")
    reports.write_jsonl(
        args.output,
        (
            {
                "text": post.text,
                "label": data_loaders.HUMAN,
                "source": post.source,
                "timestamp": post.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                "id": post.post_id,
            }
            for post in posts
        ),
    )
    return [FileTable(path=str(args.input), rows=report.rows, kept=len(posts), dropped=report.skipped)]


# ----------------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    for name in ("min_chars", "max_per_month", "sample_size"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "min_chars" else 1):
            raise UserError(f"--{name} must be {'>= 0' if name == 'min_chars' else '>= 1'}, got {value}")
    settings = {k: v for k, v in vars(args).items() if k != "report"}
    if args.command == "m4":
        output_dir = Path(args.output_dir)
        tables = prepare_m4(Path(args.input_dir), output_dir, args.min_chars)
        write_table(tables, Path(args.report or output_dir / "prepare_report.json"), settings)
    else:
        tables = prepare_reddit(args)
        write_table(tables, Path(args.report or f"{args.output}.report.json"), settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_cli_logging()
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
