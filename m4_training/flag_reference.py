"""The guide's flag tables, written from the parsers: `python -m m4_training.flag_reference` updates them.

Each table sits between `<!-- flags: NAME -->` and `<!-- /flags -->` in TRAINING_GUIDE_COMPLETE.md;
tests/test_docs_cli.py checks that the guide holds exactly what this module writes, so a default is written
down in one place only (its dataclass field).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from datasets import config as datasets_config

from m4_training import config
from m4_training.cli import CommandLineParser, field_names, flag_rows
from m4_training.reports import format_table

GUIDE = Path(__file__).resolve().parents[1] / "TRAINING_GUIDE_COMPLETE.md"
TABLE = re.compile(r"(<!-- flags: (?P<name>[\w. ]+?) -->\n)(?P<table>.*?)(<!-- /flags -->)", re.DOTALL)


def _train_dests() -> list[str]:
    ours = field_names(*config.TRAIN_GROUPS[:-1])
    # Of TrainingArguments, only the fields this tool declares again (its defaults and spellings).
    declared = [f.name for f in dataclasses.fields(config.DetectorTrainingArguments)
                if f.name in config.DetectorTrainingArguments.__annotations__]  # fmt: skip
    return ours + declared


def _parsers() -> dict[str, tuple[CommandLineParser, list[str]]]:
    parsers = {"train.py": (config.train_parser(), _train_dests())}
    predict = CommandLineParser([config.PredictArguments])
    parsers["predict.py"] = (predict, field_names(config.PredictArguments))
    parsers["app.py"] = (CommandLineParser([config.AppArguments]), field_names(config.AppArguments))
    for command, (dataclass_type, _) in config.PREPARE_COMMANDS.items():
        parsers[f"prepare_data.py {command}"] = (CommandLineParser([dataclass_type]), field_names(dataclass_type))
    parsers["summarize_runs"] = (CommandLineParser([config.SummarizeArguments]), field_names(config.SummarizeArguments))
    return parsers


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
