"""The one exception type that ends a run with a clear message instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

EXIT_USAGE = 2  # bad arguments, bad or missing input, model/tokenizer not loadable
EXIT_TRAINING = 3  # training itself failed (e.g. a non-finite loss)


class UserError(Exception):
    """An error the user can fix; `train.py` prints its message on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_cli(run: Callable[[], int]) -> int:
    """Run a command's body; a `UserError` becomes one line on stderr and its exit code."""
    try:
        return run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


def setup_cli_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(format=LOG_FORMAT, datefmt="%H:%M:%S", level=level)
