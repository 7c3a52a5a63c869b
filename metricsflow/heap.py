"""Heap settings of long-running processes: freed memory kept, long-lived objects frozen.

Keep freed memory in the process instead of handing it back to the kernel after every request.

glibc's malloc returns the top of its heap once more than M_TRIM_THRESHOLD (128 KiB to
start with) is free there, and serves blocks above M_MMAP_THRESHOLD with a fresh mmap; a
query that allocates a few MB of sample arrays and frees them then page-faults every page
in again on the next query. ``sum(rate(requests_total[5m]))`` over 100 series x 6 h took
1,865 minor faults and 12.8 ms per query in process, 0 faults and 5.5 ms with these
settings (perf/RESULTS.md, "Seals between cuts, small queries on the loop, page faults per
query"). A long-running worker measured 0-55 faults per query either way (its heap keeps
long-lived blocks above the freed ones); a fresh or small process does not. The cost is up
to ``TRIM_BYTES`` of freed memory kept resident, and blocks up to ``MMAP_BYTES`` taken from
the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_BYTES = 64 << 20
MMAP_BYTES = 16 << 20
# A user who tunes malloc through the environment keeps that.
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process; False where that is not glibc or not ours to do."""
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: their allocators behave differently
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Both, or glibc's own adjustment of the mmap threshold stops and large blocks fault again.
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    if not ok:
        log.warning("mallopt refused the heap thresholds; queries page-fault their arrays in")
    return ok


_frozen_at_last_freeze = 0


def frozen_objects() -> int:
    """How many objects the last ``freeze_long_lived`` froze (some may have been freed since).

    For the processes' gauges: ``gc.get_freeze_count`` walks the whole frozen list, 22 ms
    for 3 M objects, and a worker after a rebalance holds millions, so every scrape of
    /metrics stood the event loop still that long (3 % of a sealing worker's CPU under the
    e2e bench's scrapes, perf/RESULTS.md "The transport's floor").
    """
    return _frozen_at_last_freeze


def freeze_long_lived() -> None:
    """Take every object alive now out of the garbage collector's full collections.

    A full collection walks every tracked object: in a worker the heap of its libraries
    (Faust, aiokafka, numpy, protobuf, aiohttp) took 40-95 ms a time, on the event loop,
    once or twice a minute under load and once per table in every rebalance (Faust's store
    collects on each revoke); frozen, 1-15 ms (perf/RESULTS.md, "Full collections").
    Frozen objects are still freed when their last reference goes; only a reference cycle
    among them waits for the next call, which unfreezes and collects first.
    """
    global _frozen_at_last_freeze
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _frozen_at_last_freeze = gc.get_freeze_count()  # one walk per freeze, not one per scrape


GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def time_collections(observe: Callable[[int, float], None]) -> None:
    """Call ``observe(generation, seconds)`` after every collection: the process stands still meanwhile."""
    started = [0.0]

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            observe(info["generation"], time.perf_counter() - started[0])

    gc.callbacks.append(on_collection)
