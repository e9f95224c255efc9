"""The server process's cyclic garbage collector, set once at start-up: the start-up heap frozen.

CPython's full (generation 2) collection walks every container object the process holds. After start-up
that is ~150,000 objects of Django, the apps and their modules, none of which ever becomes garbage, and
the walk took 50-420 ms on the benchmark machine, on whichever thread allocated at that moment: the event
loop (every connection waits) or the chat writer (which holds the GIL, so the loop waits too). Those
were the isolated 50-150 ms stalls of the paced chat benchmark (docs/performance.md). ``gc.freeze()``
moves everything alive at start-up into the permanent generation, which collections never walk; a full
collection then walks only what the connections made since: a few ms. Reference counting still frees a
frozen object that is no longer used; only a reference cycle among frozen objects stays (start-up builds
none that it drops later).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def gc_tune(*, freeze: bool, threshold: tuple[int, int, int] | None) -> None:
    """Apply ``GC_THRESHOLD`` (None: the interpreter's) and, with ``GC_FREEZE``, collect once and freeze
    what is left. Call it when the application is built, before the first connection."""
    if threshold is not None:
        gc.set_threshold(*threshold)
    if freeze:
        gc.collect()  # start-up's own garbage is freed, not frozen with the rest
        gc.freeze()
    logger.debug("gc: threshold %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
