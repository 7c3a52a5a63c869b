"""A size-bounded LRU of decoded blocks: per series and block, its chunk and segments folded.

Dashboards ask for the same recent blocks again and again; decoding was 25–50 % of
query CPU (perf/RESULTS.md, "Query latency"), and scanning and folding a block's
segments per series more, while a hit costs a dict lookup. Every write and delete of
a chunk or segment goes through ``WorkerStorage``, which drops the block's entry; a
rebalance clears it (restored partitions bypass the storage).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

Block = tuple[np.ndarray, np.ndarray]


class BlockCache:
    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._blocks: OrderedDict[tuple[int, bytes], Block] = OrderedDict()

    def get(self, partition: int, key: bytes) -> Block | None:
        block = self._blocks.get((partition, key))
        if block is not None:
            self._blocks.move_to_end((partition, key))
        return block

    def put(self, partition: int, key: bytes, ts: np.ndarray, vals: np.ndarray) -> None:
        self.drop(partition, key)
        size = _size(ts, vals)
        if size > self._max_bytes:
            return
        self._blocks[(partition, key)] = (ts, vals)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, (old_ts, old_vals) = self._blocks.popitem(last=False)
            self._bytes -= _size(old_ts, old_vals)

    def drop(self, partition: int, key: bytes) -> None:
        block = self._blocks.pop((partition, key), None)
        if block is not None:
            self._bytes -= _size(*block)

    def clear(self) -> None:
        self._blocks.clear()
        self._bytes = 0


def _size(ts: np.ndarray, vals: np.ndarray) -> int:
    # Entries of empty blocks still cost a dict slot and two arrays: count them, so they are bounded too.
    return ts.nbytes + vals.nbytes + 256
