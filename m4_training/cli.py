"""What the three command-line tools share: the one-line error, exit codes, logging and the argument parser.

Settings are dataclasses (see config.py) parsed by `transformers.HfArgumentParser`, so `--help` shows every
default and a bad value, caught by argparse or by a dataclass's `__post_init__`, ends the run with one line
`error: ...` and exit code 2 before any file is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import huggingface_hub
import transformers
from transformers import HfArgumentParser

EXIT_USAGE = 2  # bad arguments, bad or missing input, model/tokenizer not loadable
EXIT_TRAINING = 3  # training itself failed (e.g. a non-finite loss)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UserError(Exception):
    """An error the user can fix: printed as one line `error: ...`, then the tool exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(error: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, every option with its default."""


class CommandLineParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are `UserError`s: one line, no usage dump of a hundred flags."""

    def __init__(self, dataclass_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("usage", "%(prog)s [options]   (--help lists every option with its default)")
        super().__init__(dataclass_types, **kwargs)
        for action in self._actions:  # the `--no_X` complements HfArgumentParser adds repeat X's help
            if isinstance(action, argparse._StoreFalseAction):
                action.help = f"turn --{action.dest} off"

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")

    def add_switch(self, flag: str, dest: str, value: Any, help: str) -> None:
        """An extra spelling that sets a dataclass field to a fixed value (e.g. `--use_wandb` -> report_to)."""
        self.add_argument(flag, dest=dest, action="store_const", const=value, default=argparse.SUPPRESS, help=help)

    def parse_dataclasses(self, argv: Sequence[str] | None) -> tuple[Any, ...]:
        """Parse into the dataclasses; a value refused by a `__post_init__` becomes a `UserError`."""
        try:
            return self.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
        except UserError:
            raise
        except (ValueError, TypeError) as error:
            raise UserError(one_line(error)) from error


def run_cli(body: Callable[[], int]) -> int:
    """Run a command; a `UserError` becomes one line on stderr and its exit code.

    Ctrl-C ends with one line and exit code 130; a closed stdout pipe (`... | head`) ends quietly with 141.
    """
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


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(format=LOG_FORMAT, datefmt="%H:%M:%S", level=level)
    quiet_library_progress()


def quiet_library_progress() -> None:
    """transformers' own progress bars off: "Loading weights" and "Writing model shards" (at every checkpoint)
    flash by in a blink and bury the log. The hub's download bars, which transformers shares, stay on: a
    download of hundreds of MB is worth watching."""
    download_bars = not huggingface_hub.utils.are_progress_bars_disabled()
    transformers.utils.logging.disable_progress_bar()
    if download_bars:
        huggingface_hub.utils.enable_progress_bars()


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
