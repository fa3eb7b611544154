"""Writing result files: every file is written next to its destination and renamed into place, so a killed run
never leaves half a file, and it gets the permissions the user's umask gives any new file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> None:
    """Call `write(handle)` on a temporary file in the destination's directory, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as stream:
            write(stream)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda handle: json.dump(obj, handle, indent=2, ensure_ascii=False))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    def write(handle: IO) -> None:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    atomic_write(path, write)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def save_figure(figure: Any, path: str | Path) -> None:
    """A matplotlib figure as PNG."""
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120, bbox_inches="tight"), binary=True)
