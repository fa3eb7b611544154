"""Run command-line cases in this one process and print their exit codes and output as JSON.

tests/test_field_cases.py starts it under restricted rights (root without DAC override, via capsh, so that
chmod counts) or inside a private mount namespace with a small tmpfs (a full disk): one Python start-up for
many cases. Usage: python tests/field_case_runner.py CASES.json, where CASES.json maps a case name to
[module, argv] (module: train, predict or prepare_data).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import sys
import traceback
from pathlib import Path


def run_case(module: str, argv: list[str]) -> dict:
    logging.root.handlers.clear()  # each tool's setup_logging then logs to this case's captured stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main(argv)
        except BaseException:  # shown to the test, which fails on any traceback
            traceback.print_exc()
            code = -1
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


if __name__ == "__main__":
    cases = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(json.dumps({name: run_case(module, argv) for name, (module, argv) in cases.items()}))
