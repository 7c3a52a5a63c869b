"""A size-bounded LRU of decoded chunk blocks.

Dashboards ask for the same recent blocks again and again; decoding was 25–50 % of
query CPU (perf/RESULTS.md, "Query latency") while a hit costs a dict lookup. Every
write and delete of a block goes through ``WorkerStorage``, which keeps this cache
coherent; a rebalance clears it (restored partitions bypass the storage).
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
        size = ts.nbytes + vals.nbytes
        if size > self._max_bytes:
            return
        self._blocks[(partition, key)] = (ts, vals)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, (old_ts, old_vals) = self._blocks.popitem(last=False)
            self._bytes -= old_ts.nbytes + old_vals.nbytes

    def drop(self, partition: int, key: bytes) -> None:
        block = self._blocks.pop((partition, key), None)
        if block is not None:
            self._bytes -= block[0].nbytes + block[1].nbytes

    def clear(self) -> None:
        self._blocks.clear()
        self._bytes = 0
