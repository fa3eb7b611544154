"""Prepare training files: clean a raw M4 directory, or turn a Reddit dump into the Reddit training file.

    python prepare_data.py m4 --input_dir M4/data --output_dir M4_cleaned/data
    python prepare_data.py reddit --input reddit_dump.csv --output reddit_training_60k.jsonl --sample_size 60000

Both apply the same `m4_training.cleaning.clean_text` and a minimum length after cleaning, print a table of rows
kept and dropped by reason, and write it as JSON next to the output. Bad lines are counted by reason and
logged with file:line, as train.py does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import data_loaders
from m4_training import cli, files
from m4_training.cleaning import clean_text
from m4_training.cli import UserError, arg_help, check_optional_positive, check_output_paths, require, setting
from m4_training.files import check_output_dir, check_output_file, new_mode, write_json, write_jsonl, write_text
from m4_training.reports import format_table

logger = logging.getLogger("prepare_data")

TIMESTAMP_FIELDS = ("timestamp", "created_utc", "created")
REDDIT_ID_FIELDS = ("id", "name")
REDDIT_PLACEHOLDERS = {"[deleted]", "[removed]"}  # the body a deleted or removed Reddit post keeps
M4_REPORT_NAME = "prepare_report.json"
REDDIT_CUTOFF = "2022-11-30"  # ChatGPT's public release: posts before it are very unlikely to be machine-written


@dataclass
class PrepareM4Arguments:
    input_dir: str = field(**arg_help("directory of raw <domain>_<generator>.jsonl files"))
    output_dir: str = setting("M4_cleaned/data", "where the cleaned files go (must differ from the input)")
    min_chars: int = setting(50, "drop a row whose human or machine text is shorter after cleaning")
    report: str | None = setting(
        None, "a copy of the JSON table outside OUTPUT_DIR (always in OUTPUT_DIR/prepare_report.json)"
    )

    def __post_init__(self) -> None:
        require(self.min_chars >= 0, "min_chars", "at least 0", self.min_chars)
        # The output directory is replaced as a whole when complete, so it may not hold the input either.
        check_output_paths({"--output_dir": self.output_dir, "--report": self.report}, {"--input_dir": self.input_dir})
        check_output_paths({"--input_dir": self.input_dir}, {"--output_dir": self.output_dir})
        output_dir, report = Path(self.output_dir).resolve(), Path(self.report or self.table).resolve()
        if report != Path(self.table).resolve() and (output_dir in report.parents or report in output_dir.parents):
            raise UserError(
                f"--report {self.report} and --output_dir {self.output_dir} overlap: the output directory is "
                f"replaced as a whole and holds its own table ({self.table}); choose a --report outside it"
            )

    @property
    def table(self) -> str:
        """The table in the output directory, which also marks the directory as this command's output."""
        return str(Path(self.output_dir) / M4_REPORT_NAME)


@dataclass
class PrepareRedditArguments:
    input: str = field(**arg_help("CSV or JSONL dump with text/body, timestamp and id"))
    output: str = setting("reddit_training_60k.jsonl", "the Reddit training file")
    cutoff_date: str = setting(REDDIT_CUTOFF, "keep posts written before this UTC date")
    min_chars: int = setting(50, "drop posts shorter than this after cleaning")
    max_per_month: int | None = setting(None, "cap of posts per calendar month (seeded)")
    sample_size: int | None = setting(None, "total posts kept (seeded; default all)")
    source: str | None = setting(
        None, f"`source` (domain) of every post (default: the row's, else {data_loaders.REDDIT_DOMAIN})"
    )
    include_title: bool = setting(False, "prepend a `title` column to the body")
    seed: int = setting(42, "seed of the month cap and the sample")
    report: str | None = setting(None, "the JSON table (default: OUTPUT.report.json)")

    def __post_init__(self) -> None:
        require(self.min_chars >= 0, "min_chars", "at least 0", self.min_chars)
        check_optional_positive("max_per_month", self.max_per_month)
        check_optional_positive("sample_size", self.sample_size)
        try:
            date.fromisoformat(self.cutoff_date)
        except ValueError as error:
            raise UserError(f"--cutoff_date must be a date like {REDDIT_CUTOFF}, got {self.cutoff_date!r}") from error
        check_output_paths({"--output": self.output, "--report": self.report_path}, {"--input": self.input})

    @property
    def report_path(self) -> str:
        return self.report or f"{self.output}.report.json"


PREPARE_COMMANDS = {
    "m4": (PrepareM4Arguments, "raw M4 directory -> cleaned M4 directory"),
    "reddit": (PrepareRedditArguments, "Reddit dump (CSV or JSONL) -> Reddit training file"),
}


def prepare_parser(description: str | None = None) -> cli.CommandLineParser:
    parser = cli.CommandLineParser(prog="prepare_data.py", description=description)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{m4,reddit}", parser_class=cli.CommandLineParser
    )
    for name, (dataclass_type, help_text) in PREPARE_COMMANDS.items():
        commands.add_parser(name, help=help_text, dataclass_types=[dataclass_type], prog=f"prepare_data.py {name}")
    return parser


def parse_prepare_args(
    argv: list[str] | None = None, description: str | None = None
) -> tuple[str, PrepareM4Arguments | PrepareRedditArguments]:
    values = vars(prepare_parser(description).parse_args(argv))  # the command and its dataclass's fields
    command = values.pop("command")
    try:
        return command, PREPARE_COMMANDS[command][0](**values)
    except ValueError as error:
        raise UserError(str(error)) from error


def write_tables(reports: list[data_loaders.FileReport], path: Path, settings: dict[str, Any]) -> None:
    """Rows read, kept and dropped by reason per input file: as JSON in `path`, and as a table on stdout."""
    files = [
        {"path": r.path, "rows": r.rows, "kept": r.used, "dropped": dict(sorted(r.skipped.items()))} for r in reports
    ]
    write_json(path, {"settings": settings, "files": files})
    reasons = sorted({reason for report in reports for reason in report.skipped})
    rows = [[Path(r.path).name, r.rows, r.used, *(r.skipped[reason] for reason in reasons)] for r in reports]
    print(format_table(["file", "rows", "kept", *reasons], [*rows, ["TOTAL", *map(sum, list(zip(*rows))[1:])]]))


def clean_field(value: Any) -> tuple[Any, str | None]:
    """Clean a text field (a string, or a list of strings joined by the loader); return (value, problem)."""
    if value is None:
        return None, "null"
    if isinstance(value, list):
        cleaned = [text for item in value if item is not None and (text := clean_text(str(item)))]
    elif isinstance(value, str):
        cleaned = clean_text(value)
    else:
        return None, "not_a_string"
    return cleaned, None if cleaned else "empty"


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
            if len("\n\n".join(cleaned) if isinstance(cleaned, list) else cleaned) < min_chars:
                return f"{role}_text_too_short"
            row[name] = cleaned
    return None


def _cleaned_m4_rows(path: Path, report: data_loaders.FileReport, min_chars: int) -> Iterator[dict[str, Any]]:
    for line, row in data_loaders.iter_jsonl(path, report):
        if reason := clean_m4_row(row, min_chars):
            report.skip(line, reason)
        else:
            report.used += 1
            yield row


def check_m4_output_dir(output_dir: Path) -> None:
    """Only a missing or empty directory, or an earlier output of this command, may be replaced as a whole."""
    check_output_dir(output_dir, "--output_dir")
    check_output_dir(output_dir.absolute().parent, "--output_dir's parent")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / M4_REPORT_NAME).is_file():
        raise UserError(
            f"--output_dir {output_dir} holds files that prepare_data.py m4 did not write (no {M4_REPORT_NAME}); "
            "it would be replaced as a whole: choose a new or empty --output_dir"
        )


def prepare_m4(args: PrepareM4Arguments, settings: dict) -> None:
    """Clean every `*.jsonl` of --input_dir into --output_dir (same file names); rows keep their other keys.
    Everything, the table too, is written into a temporary directory next to the output directory, which then takes
    its place: a run stopped by a crash, a kill or a full disk leaves no half-written directory for train.py."""
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        raise UserError(f"M4 input directory not found: {input_dir}")
    if not (paths := sorted(input_dir.glob("*.jsonl"))):
        raise UserError(f"no .jsonl files in {input_dir}")
    check_m4_output_dir(output_dir)
    if args.report:
        check_output_file(args.report, "--report")
    parent = output_dir.absolute().parent
    files.check_free_space(parent, sum(p.stat().st_size for p in paths), "--output_dir", "the cleaned files")
    # Removed on failure; on success it has become the output directory (so there is nothing left to remove).
    with tempfile.TemporaryDirectory(prefix=f".{output_dir.name}.tmp-", dir=parent, ignore_cleanup_errors=True) as name:
        building, tables = Path(name), []
        for path in paths:
            tables.append(data_loaders.FileReport(path=str(path), kind="m4"))
            try:
                write_jsonl(building / path.name, _cleaned_m4_rows(path, tables[-1], args.min_chars))
            except OSError as error:  # named by its final place, not the temporary one
                if message := files.write_failure(error, building, output_dir / path.name):
                    raise UserError(message) from error
                raise
        write_tables(tables, building / M4_REPORT_NAME, settings)
        replace_directory(building, output_dir)
    if args.report and Path(args.report).resolve() != Path(args.table).resolve():
        write_text(args.report, Path(args.table).read_text(encoding="utf-8"))
    logger.info("Cleaned files written to %s; table in %s", output_dir, args.report or args.table)


def replace_directory(new: Path, target: Path) -> None:
    """Put the finished directory `new` in the place of `target` (an earlier output, empty or missing)."""
    os.chmod(new, new_mode(directory=True))  # a temporary directory is private
    if not target.exists():
        os.rename(new, target)
        return
    previous = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, previous)
    os.rename(new, target)
    shutil.rmtree(previous)
    logger.info("Replaced the earlier output in %s", target)


def parse_timestamp(value: Any) -> datetime | None:
    """Epoch seconds (int, float or numeric string) or an ISO date/time string -> aware UTC datetime."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    with contextlib.suppress(ValueError):
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))  # Python 3.10 takes no "Z"
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    return None


def _first(row: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((row[name] for name in fields if row.get(name) not in (None, "")), None)


def read_reddit_posts(args: PrepareRedditArguments, report: data_loaders.FileReport) -> list[tuple[int, str, dict]]:
    """(line, month, row to write) of every clean, long-enough, pre-cut-off, first-seen post, in file order."""
    path = Path(args.input)
    if not os.path.lexists(path):
        raise UserError(f"Reddit dump not found: {path}")
    cutoff = datetime.combine(date.fromisoformat(args.cutoff_date), datetime.min.time(), tzinfo=timezone.utc)
    posts: list[tuple[int, str, dict]] = []
    seen_texts: set[str] = set()
    seen_ids: set[str] = set()
    for line, row in data_loaders.iter_rows(path, report):
        text, _, problem = data_loaders.extract_text(row, data_loaders.TEXT_FIELDS)
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
        key = data_loaders.normalize_text(text, data_loaders.TextNormalization(digits=True, unicode=False)).lower()
        post_id = str(_first(row, REDDIT_ID_FIELDS) or f"{path.stem}-{line}")
        if key in seen_texts or post_id in seen_ids:
            report.skip(line, "duplicate")
            continue
        seen_texts.add(key)
        seen_ids.add(post_id)
        own_source = row.get("source") if isinstance(row.get("source"), str) else None
        source = args.source or own_source or data_loaders.REDDIT_DOMAIN
        written = timestamp.strftime("%Y-%m-%d %H:%M:%S")
        row = {"text": text, "label": data_loaders.HUMAN, "source": source, "timestamp": written, "id": post_id}
        posts.append((line, timestamp.strftime("%Y-%m"), row))
    return posts


def _keep(posts: list, chosen: set[int], reason: str, report: data_loaders.FileReport) -> list:
    """The posts at the `chosen` positions, in order; the others are counted as skipped for `reason`."""
    for index, (line, *_) in enumerate(posts):
        if index not in chosen:
            report.skip(line, reason)
    return [post for index, post in enumerate(posts) if index in chosen]


def sample_posts(posts: list, args: PrepareRedditArguments, report: data_loaders.FileReport) -> list:
    """Cap each calendar month, then draw the total sample; both seeded, and the file order is kept."""
    if args.max_per_month is not None:
        by_month: dict[str, list[int]] = defaultdict(list)
        for index, (_, month, _) in enumerate(posts):
            by_month[month].append(index)
        chosen: set[int] = set()
        for month, indices in by_month.items():  # each month draws from its own seeded generator
            chosen.update(random.Random(f"{args.seed}-{month}").sample(indices, min(args.max_per_month, len(indices))))
        posts = _keep(posts, chosen, "over_month_cap", report)
    if args.sample_size is not None and len(posts) > args.sample_size:
        chosen = set(random.Random(args.seed).sample(range(len(posts)), args.sample_size))
        posts = _keep(posts, chosen, "over_sample_size", report)
    return posts


def prepare_reddit(args: PrepareRedditArguments) -> data_loaders.FileReport:
    check_output_file(args.output, "--output")
    check_output_file(args.report_path, "--report")
    dump = Path(args.input)
    needed = dump.stat().st_size if dump.is_file() else 0  # the posts kept are at most the dump
    files.check_free_space(Path(args.output).absolute().parent, needed, "--output", "the posts")
    report = data_loaders.FileReport(path=str(args.input), kind="reddit")
    posts = sample_posts(read_reddit_posts(args, report), args, report)
    if not report.rows:
        raise UserError(f"{args.input}: holds no posts (no rows); nothing to prepare")
    if not posts:
        raise UserError(f"no post of {args.input} passed the filters: {dict(report.skipped)}")
    write_jsonl(args.output, (row for _, _, row in posts))
    report.used = len(posts)
    return report


def prepare(command: str, args: PrepareM4Arguments | PrepareRedditArguments) -> int:
    settings = {"command": command, **{k: v for k, v in vars(args).items() if k != "report"}}
    output = Path(args.output_dir if command == "m4" else args.output)
    try:
        if command == "m4":
            prepare_m4(args, settings)
        else:
            write_tables([prepare_reddit(args)], Path(args.report_path), settings)
            logger.info("Posts written to %s; table in %s", output, args.report_path)
    except OSError as error:
        if message := files.write_failure(error, output.absolute().parent):
            raise UserError(message) from error
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    return cli.run_cli(lambda: prepare(*parse_prepare_args(argv, description=__doc__)))


if __name__ == "__main__":
    sys.exit(main())
