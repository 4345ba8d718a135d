"""The garbage collector in a long-running ingest: what start-up built is left out of its passes.

Draining a backlog allocates a few dozen objects per reading, and the engine keeps six hours
of samples per station: the collector's full passes ran every few thousand readings and each
walked every object start-up had built (modules, the schema, the app) as well: about a third
of the drain's time (docs/performance.md). Start-up's objects live as long as the process,
so they are frozen out of the collector's view; young collections run less often. And while a
batch is built the collector waits: what a batch allocates lives until its commit and dies by
reference count right after, so a collection in between only walked live objects.
"""

from __future__ import annotations

import contextlib
import gc

YOUNG_THRESHOLD = 5000  # allocations between young collections (CPython's default is 700)


def settle_after_startup() -> None:
    """Collect once, then freeze what start-up built; call it once, after the composition root, before ingest."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextlib.contextmanager
def collector_waits():
    """No automatic collection inside the block (a batch); the collector is as it was after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
