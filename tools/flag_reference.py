"""The guide's flag tables, written from the parsers: `python -m tools.flag_reference` updates them.

Each table sits between `<!-- flags: NAME -->` and `<!-- /flags -->` in TRAINING_GUIDE_COMPLETE.md;
tests/test_docs_cli.py checks that the guide holds exactly what this module writes, so a default is written
down in one place only (its dataclass field).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from datasets import config as datasets_config

import prepare_data
from m4_training import train_args
from m4_training.cli import CommandLineParser
from m4_training.reports import format_table
from m4_training.serving import AppArguments
from m4_training.summarize_runs import SummarizeArguments
from predict import PredictArguments

GUIDE = Path(__file__).resolve().parents[1] / "TRAINING_GUIDE_COMPLETE.md"
TABLE = re.compile(r"(<!-- flags: (?P<name>[\w. ]+?) -->\n)(?P<table>.*?)(<!-- /flags -->)", re.DOTALL)


def _train_dests() -> list[str]:
    ours = field_names(*train_args.TRAIN_GROUPS[:-1])
    # Of TrainingArguments, only the fields this tool declares again (its defaults and spellings).
    declared = [f.name for f in dataclasses.fields(train_args.DetectorTrainingArguments)
                if f.name in train_args.DetectorTrainingArguments.__annotations__]  # fmt: skip
    return ours + declared


def _parsers() -> dict[str, tuple[CommandLineParser, list[str]]]:
    parsers = {"train.py": (train_args.train_parser(), _train_dests())}
    predict = CommandLineParser([PredictArguments])
    parsers["predict.py"] = (predict, field_names(PredictArguments))
    parsers["app.py"] = (CommandLineParser([AppArguments]), field_names(AppArguments))
    for command, (dataclass_type, _) in prepare_data.PREPARE_COMMANDS.items():
        parsers[f"prepare_data.py {command}"] = (CommandLineParser([dataclass_type]), field_names(dataclass_type))
    parsers["summarize_runs"] = (CommandLineParser([SummarizeArguments]), field_names(SummarizeArguments))
    return parsers


def flag_rows(parser: argparse.ArgumentParser, dests: Iterable[str]) -> list[tuple[str, str, str]]:
    """(flags, default, help) of the parser's options for these destinations, in the parser's order.

    The guide's flag tables are these rows (tests/test_docs_cli.py compares them), so the parser stays the one
    place where a default is written down.
    """
    wanted = set(dests)
    rows = []
    for action in parser._actions:  # argparse has no public accessor for its options
        switch = isinstance(action, argparse._StoreConstAction) and action.default is argparse.SUPPRESS  # add_switch
        if (action.dest not in wanted and not switch) or not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flags = [option for option in action.option_strings if "-" not in option[2:]]
        rows.append((", ".join(f"`{flag}`" for flag in flags), _default_cell(action), action.help or ""))
    return rows


def _default_cell(action: argparse.Action) -> str:
    if action.default is argparse.SUPPRESS:
        return "—"
    if isinstance(action, argparse._StoreFalseAction):  # a `--no_X` switch: its field's default is on
        return "—"
    if action.required:
        return "`required`"
    default = action.default
    if default is None:
        return "`none`"
    if isinstance(default, bool):
        return "`on`" if default else "`off`"
    if isinstance(default, (list, tuple)):
        return "`" + " ".join(str(item) for item in default) + "`"
    return f"`{getattr(default, 'value', default)}`"


def field_names(*dataclass_types: type) -> list[str]:
    return [f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init]


def tables() -> dict[str, str]:
    """Markdown flag table per tool, keyed by the name in its guide marker."""
    cache = str(datasets_config.HF_DATASETS_CACHE)
    result = {}
    for name, (parser, dests) in _parsers().items():
        rows = [
            (flags, default.replace(cache, "$HF_DATASETS_CACHE"), meaning.replace("|", "\\|"))
            for flags, default, meaning in flag_rows(parser, dests)
        ]
        result[name] = format_table(["Flag", "Default", "Meaning"], rows, markdown=True) + "\n"
    return result


def guide_tables(text: str) -> dict[str, str]:
    return {match["name"]: match["table"] for match in TABLE.finditer(text)}


def update_guide(path: Path = GUIDE) -> bool:
    """Rewrite the guide's tables from the parsers; True if anything changed."""
    text = path.read_text(encoding="utf-8")
    current = tables()
    updated = TABLE.sub(lambda m: m.group(1) + current.get(m["name"], m["table"]) + m.group(4), text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


if __name__ == "__main__":
    print("updated" if update_guide() else "already up to date", GUIDE.name)
    sys.exit(0)
