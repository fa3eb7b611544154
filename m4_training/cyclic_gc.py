"""Python's cyclic garbage collector held off while preparation builds hundreds of thousands of objects.

Every few hundred new containers (documents, their source lists and dicts, token-id lists) trigger a collection,
and the collections that reach the oldest generation walk every live object: preparation would spend a share of
its time, growing with the corpus, walking the corpus it is building. These objects hold no reference cycles,
so reference counting frees them without the collector; it runs again as before once preparation is over.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (also usable as a decorator); the previous state returns
    on exit, even on an error, and a block inside another leaves it to the outer one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
