"""Python's cyclic garbage collector held off while preparation builds hundreds of thousands of objects: its
collections of the oldest generation walk every live object, a cost that grows with the corpus, and these objects
hold no reference cycles, so reference counting frees them without it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (or decorated function); the previous state returns on exit,
    even on an error, and a block inside another leaves it to the outer one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
