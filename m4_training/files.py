"""Writing result files: each is written next to its destination and renamed into place, so a killed run never
leaves half a file, with the permissions the user's umask gives any new file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from m4_training.cli import UserError


def new_mode(directory: bool = False) -> int:
    """The permissions the user's umask gives a new file (or directory)."""
    mask = os.umask(0)  # the only way to read the umask is to set it
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


# Errors of a write that failed for want of room or rights (libraries' savers wrap some in other types).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
WRITE_FAILURE_TEXTS = ("No space left", "StorageFull", "file write failed", "Disk quota", "Read-only file system")


def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def write_failure(error: BaseException, path: str | Path, target: str | Path | None = None) -> str | None:
    """One line for a write to `target` (default: the error's file, else `path`) that failed for want of room or
    rights, naming the file and the free space on the disk of `path`; None for any other error."""
    text = str(error)
    if not (
        (isinstance(error, OSError) and error.errno in WRITE_ERRNOS)
        or any(fragment in text for fragment in WRITE_FAILURE_TEXTS)
    ):
        return None
    target = target or getattr(error, "filename", None) or path
    reason = getattr(error, "strerror", None) or text.rsplit(":", 1)[-1].strip() or type(error).__name__
    return f"could not write {target} ({reason}); {format_bytes(free_bytes(path))} free on that disk"


def free_bytes(path: str | Path) -> int:
    """Free space on the disk of `path` (or of its nearest existing parent)."""
    return shutil.disk_usage(_nearest_existing(path)).free


def check_free_space(path: str | Path, needed: int, flag: str, what: str, advice: str = "") -> None:
    """Stop before the work when the disk of `path` has less than `needed` bytes free for `what`."""
    if (free := free_bytes(path)) < needed:
        raise UserError(
            f"{flag} {path}: {format_bytes(free)} free on its disk, but {what} need about {format_bytes(needed)}; "
            f"free space{advice} or choose another {flag}"
        )


def _nearest_existing(path: str | Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create(path: Path, flag: str) -> None:
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable by this user; choose another {flag}")


def check_output_dir(path: str | Path, flag: str) -> None:
    """Before any work: `path` can be a directory this user writes into (it is not created here)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a directory; choose another {flag}")
    _check_can_create(path, flag)


def check_output_file(path: str | Path, flag: str) -> None:
    """Before any work: `path` can be written as a file (not a directory, in a directory this user can write)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    _check_can_create(path.parent, flag)


def atomic_write(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> None:
    """Call `write(handle)` on a temporary file in the destination's directory, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(handle, "wb" if binary else "w", encoding=None if binary else "utf-8") as stream:
            write(stream)
        os.chmod(temporary, new_mode())  # mkstemp makes 0600 files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    """A JSON file's value; None when there is no such file; unreadable or invalid JSON stops the run."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from error
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from error


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda handle: json.dump(obj, handle, indent=2, ensure_ascii=False))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write(path, lambda handle: handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def save_figure(figure: Any, path: str | Path) -> None:
    """A matplotlib figure as PNG."""
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120, bbox_inches="tight"), binary=True)


def apply_umask(directory: str | Path) -> None:
    """Give the files in `directory` that libraries wrote as 0600 (safetensors) the umask's permissions."""
    mode = new_mode()
    for path in Path(directory).iterdir():
        if path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
            os.chmod(path, mode)
