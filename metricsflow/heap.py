"""Keep freed memory in the process instead of handing it back to the kernel after every request.

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
import logging
import os

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
