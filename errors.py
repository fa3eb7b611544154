"""The one exception type that ends a run with a clear message instead of a traceback."""

EXIT_USAGE = 2  # bad arguments, bad or missing input, model/tokenizer not loadable
EXIT_TRAINING = 3  # training itself failed (e.g. a non-finite loss)


class UserError(Exception):
    """An error the user can fix; `train.py` prints its message on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
