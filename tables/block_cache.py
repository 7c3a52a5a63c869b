"""A size-bounded LRU of decoded blocks: per series and block, its chunk and segments folded,
or its rollup windows of one tier.

Dashboards ask for the same recent blocks again and again; decoding was 25–50 % of
query CPU (perf/RESULTS.md, "Query latency"), and scanning and folding a block's
segments per series more, while a hit costs a dict lookup. A 1h rollup block holds two
windows, so a 30-day read decodes 360 of them per series (~0.1 ms each). Every write
and delete of a chunk, segment or rollup goes through ``WorkerStorage``, which drops
the block's entry; a rebalance clears it (restored partitions bypass the storage).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

Block = tuple[np.ndarray, np.ndarray]
V = TypeVar("V")


def block_size(block: Block) -> int:
    # Entries of empty blocks still cost a dict slot and two arrays: count them, so they are bounded too.
    return block[0].nbytes + block[1].nbytes + 256


class BlockCache(Generic[V]):
    """Decoded values by (partition, key), least recently used first out past ``max_bytes`` (``size`` of each)."""

    def __init__(self, max_bytes: int = 64 << 20, size: Callable[[V], int] = block_size) -> None:  # type: ignore[assignment]
        self._max_bytes = max_bytes
        self._size = size
        self._bytes = 0
        self._blocks: OrderedDict[tuple[int, bytes], V] = OrderedDict()
        self._sizes: dict[tuple[int, bytes], int] = {}

    def get(self, partition: int, key: bytes) -> V | None:
        block = self._blocks.get((partition, key))
        if block is not None:
            self._blocks.move_to_end((partition, key))
        return block

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[V | None]:
        """``get`` of every key, in order: a query reads hundreds of (series, block) entries at once."""
        blocks = self._blocks
        wanted = [(partition, k) for k in keys]
        found = [blocks.get(k) for k in wanted]
        touch = blocks.move_to_end
        for k, block in zip(wanted, found, strict=True):
            if block is not None:
                touch(k)
        return found

    def put(self, partition: int, key: bytes, value: V, size: int | None = None) -> None:
        """Keep ``value`` under ``size`` bytes (default ``size(value)``; less for a block whose
        timestamps another block already holds, see tables/shared_stamps.py)."""
        self.drop(partition, key)
        if size is None:
            size = self._size(value)
        if size > self._max_bytes:
            return
        self._blocks[(partition, key)] = value
        self._sizes[(partition, key)] = size
        self._bytes += size
        while self._bytes > self._max_bytes:
            old, _ = self._blocks.popitem(last=False)
            self._bytes -= self._sizes.pop(old)

    def drop(self, partition: int, key: bytes) -> None:
        if self._blocks.pop((partition, key), None) is not None:
            self._bytes -= self._sizes.pop((partition, key))

    def clear(self) -> None:
        self._blocks.clear()
        self._sizes.clear()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """What the entries were counted as, together."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._blocks)
