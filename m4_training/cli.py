"""What the command-line tools share: the one-line error, exit codes, logging, the argument parser and common checks.

Each tool declares its settings as dataclasses parsed by `transformers.HfArgumentParser`, so `--help` shows every
default, and a bad value ends the run with one line `error: ...` and exit code 2 before any file is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from itertools import combinations, product
from pathlib import Path
from typing import Any, get_type_hints

import huggingface_hub
import transformers
from transformers import HfArgumentParser

EXIT_USAGE = 2  # bad arguments, bad or missing input, model/tokenizer not loadable
EXIT_TRAINING = 3  # training itself failed (e.g. a non-finite loss)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE)

logger = logging.getLogger(__name__)


class UserError(Exception):
    """An error the user can fix: printed as one line `error: ...`, then the tool exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(error: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written; each option's default once: appended unless its help says it already, and not
    for the `--no_X` complement of a switch that is on."""

    def _get_help_string(self, action: argparse.Action) -> str | None:  # argparse's hook for the default's text
        help = action.help or ""
        return help if "default" in help or help.startswith("turn --") else super()._get_help_string(action)


class CommandLineParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are `UserError`s (one line, no usage dump); a dataclass with an
    `_inherited_argument_group_name` shows the fields it declares in its group and those it inherits in that one."""

    def __init__(self, dataclass_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("usage", "%(prog)s [options]   (--help lists every option with its default)")
        self.groups: dict[str, Any] = {}  # help groups by title (argparse names no public type for them)
        super().__init__(dataclass_types, **kwargs)
        # `-inf` and `-1e-3` are values, as `-1` is: argparse would take them for unknown flags.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)
        for action in self._actions:  # the `--no_X` complements HfArgumentParser adds repeat X's help
            if action.option_strings[:1] == [f"--no_{action.dest}"]:
                action.help = f"turn --{action.dest} off"

    def _add_dataclass_arguments(self, dtype: Any) -> None:
        # HfArgumentParser's hook for one dataclass: it has no public way to show a dataclass in two groups.
        inherited_title = getattr(dtype, "_inherited_argument_group_name", None)
        if inherited_title is None:
            return super()._add_dataclass_arguments(dtype)
        by_name, hints = {f.name: f for f in dataclasses.fields(dtype) if f.init}, get_type_hints(dtype)
        declared = [name for name in vars(dtype)["__annotations__"] if name in by_name]
        inherited = [name for name in by_name if name not in declared]
        for title, names in ((dtype._argument_group_name, declared), (inherited_title, inherited)):
            self.groups[title] = self.add_argument_group(title)
            for name in names:
                by_name[name].type = hints[name]
                self._parse_dataclass_field(self.groups[title], by_name[name])

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")

    def add_switch(self, flag: str, dest: str, value: Any, help: str, group: str | None = None) -> None:
        """An extra spelling that sets a dataclass field to a fixed value (e.g. `--use_wandb` -> report_to), shown
        in the help `group` of that title (default: the top one)."""
        container = self.groups[group] if group else self
        container.add_argument(flag, dest=dest, action="store_const", const=value, default=argparse.SUPPRESS, help=help)

    def parse_dataclasses(self, argv: Sequence[str] | None) -> tuple[Any, ...]:
        """Parse into the dataclasses (from flags or a JSON file); a `__post_init__`'s refusal becomes a `UserError`."""
        argv = parse_args_or_json_file(self, sys.argv[1:] if argv is None else argv)
        try:
            return self.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
        except (ValueError, TypeError) as error:
            raise UserError(one_line(error)) from error


def parse_args_or_json_file(parser: CommandLineParser, argv: Sequence[str]) -> list[str]:
    """`argv`, or the settings of a JSON file given as the only argument written out as flags, checked as flags are:
    `python train.py args.json` with {"lr": 1e-5, "train_generators": ["a"]} is `--lr 1e-05 --train_generators a`."""
    if len(argv) != 1 or not argv[0].endswith(".json"):
        return list(argv)
    path = argv[0]
    try:
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: cannot be read as JSON settings ({one_line(error)})") from error
    if not isinstance(settings, dict):
        raise UserError(f'{path}: must hold one JSON object of settings, such as {{"output_dir": "out"}}')

    def as_text(value: Any) -> str:  # as on a command line: true/false, a dict (a Trainer option) as JSON
        return json.dumps(value) if isinstance(value, (dict, bool)) else str(value)

    flags = []
    for key, value in settings.items():
        if value is None or value == []:
            raise UserError(f'{path}: "{key}": {json.dumps(value)} is not a value; leave the key out for its default')
        flags += [f"--{key}", *map(as_text, value if isinstance(value, list) else [value])]
    try:
        unknown = parser.parse_known_args(flags)[1]
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    if unknown:
        key = next((item for item in unknown if item.startswith("--")), unknown[0]).removeprefix("--")
        raise UserError(f'{path}: "{key}" is not a setting of {parser.prog} (see {parser.prog} --help)')
    return flags


def run_cli(body: Callable[[], int]) -> int:
    """Run a command; a `UserError` becomes one line on stderr and its exit code, Ctrl-C one line and 130, a closed
    stdout pipe (`... | head`) a quiet 141."""
    try:
        return body()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); nothing was written that looks finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left: further writes to stdout, even at exit, would raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def offline_variable() -> str | None:
    """The variable that keeps the Hub off (HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE), to name in messages, or None."""
    if not huggingface_hub.is_offline_mode():
        return None
    only_transformers = os.environ.get("TRANSFORMERS_OFFLINE") and not os.environ.get("HF_HUB_OFFLINE")
    return "TRANSFORMERS_OFFLINE" if only_transformers else "HF_HUB_OFFLINE"


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines with the time; transformers' own progress bars ("Loading weights", "Writing model shards") off: they
    flash by and bury the log. The hub's download bars, which transformers shares, stay on: worth watching."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    download_bars = not huggingface_hub.utils.are_progress_bars_disabled()
    transformers.utils.logging.disable_progress_bar()
    if download_bars:
        huggingface_hub.utils.enable_progress_bars()


def arg_help(text: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"help": text, **extra}}


def setting(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with its --help text (and argparse `extra`s); a list default is copied for each instance."""
    given = {"default_factory": default.copy} if isinstance(default, list) else {"default": default}
    return dataclasses.field(**given, **arg_help(help, **extra))


def require(condition: bool, flag: str, requirement: str, value: Any) -> None:
    if not condition:
        raise UserError(f"--{flag} must be {requirement}, got {value}")


def check_optional_positive(flag: str, value: int | None) -> None:
    require(value is None or value >= 1, flag, "at least 1", value)


def _used_paths(paths: dict[str, str | list[str] | None]) -> list[tuple[str, str, Path]]:
    """(flag, path, resolved path) of every path given (one or several per flag); None and '-' (stdio) are not paths."""
    return [
        (flag, path, Path(path).resolve())
        for flag, value in paths.items()
        for path in ([value] if isinstance(value, str) else value or [])
        if path and path != "-"
    ]


def check_output_paths(outputs: dict[str, str | None], protected: dict[str, str | list[str] | None]) -> None:
    """No output may be, or lie inside, an input or a model directory, nor be another output: nothing the user
    already has is ever replaced. Keys are the flags (one path, several, or None when not used)."""
    used_outputs = _used_paths(outputs)
    for (flag, path, resolved), (other_flag, other, other_resolved) in product(used_outputs, _used_paths(protected)):
        if resolved.is_relative_to(other_resolved):
            where = "is" if resolved == other_resolved else "is inside"
            raise UserError(
                f"{flag} {path} {where} {other_flag} {other}: writing there would replace what is read; "
                f"choose another {flag}"
            )
    for (flag, path, resolved), (other_flag, _, other_resolved) in combinations(used_outputs, 2):
        if resolved == other_resolved:
            raise UserError(f"{flag} and {other_flag} are the same path ({path}); give two paths")


def local_directory(name: str | None) -> str | None:
    """A --model given as a local directory (a hub id is not a path the run could write into)."""
    return name if name and Path(name).is_dir() else None


def capped_num_proc(num_proc: int | None) -> int | None:
    """--num_proc above the CPU count only adds processes that wait; cap it (with a warning)."""
    check_optional_positive("num_proc", num_proc)
    cpus = os.cpu_count() or 1
    if num_proc is not None and num_proc > cpus:
        logger.warning("--num_proc %d is more than the %d CPUs here; using %d", num_proc, cpus, cpus)
        return cpus
    return num_proc


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 document`, `2 documents`: a count with its noun in the right number (`plural` when not noun + s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
