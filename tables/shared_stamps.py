"""One array per distinct timestamp column among the cached blocks.

Series sent together (one scrape target, one agent, one load generator) carry the same
timestamps, so the folded blocks of a thousand such series held a thousand equal int64
columns: half of what the block cache kept for them. Sharing one read-only array per
column halves that, and a read then clips each shared column once for every series that
has it (``WorkerStorage.select_range``). An array lives as long as a cached block holds it.
"""

from __future__ import annotations

import weakref

import numpy as np
import xxhash


class SharedStamps:
    """Equal timestamp columns answered with one array."""

    def __init__(self) -> None:
        self._columns: weakref.WeakValueDictionary[tuple[int, int, int, int], np.ndarray] = (
            weakref.WeakValueDictionary())

    def share(self, ts: np.ndarray) -> tuple[np.ndarray, bool]:
        """A read-only array equal to ``ts`` (the same one for every equal column), and whether it is new.

        Columns are found by length, first and last stamp and an XXH3 digest, and compared
        in full before one is reused, so a digest collision only costs the sharing.
        """
        if ts.size == 0:
            return ts, True
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        key = (ts.size, int(ts[0]), int(ts[-1]), xxhash.xxh3_64_intdigest(ts))
        found = self._columns.get(key)
        if found is not None and np.array_equal(found, ts):
            return found, False
        ts.flags.writeable = False  # shared between series: no reader may change it
        self._columns[key] = ts
        return ts, True
