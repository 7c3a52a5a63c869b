"""Which partitions one check of the cut timer cuts (``WorkerStorage.cut_due``): under a steady
load every partition is due at once, and cutting them all back to back starved consumption."""

from __future__ import annotations

import time

import numpy as np

from metricsflow.config import Settings
from metricsflow.pointbatch import encode_batches
from tables.storage import StorageTables, WorkerStorage
from tests.test_storage_segments import T0, Flush, every_10s, tables  # noqa: F401  (tables: the fixture)

PARTITIONS = range(4)


def _storage(tables: StorageTables) -> WorkerStorage:  # noqa: F811
    settings = Settings(head_cut_interval_s=4.0, head_max_points=500)
    return WorkerStorage(settings, tables, lambda: set(PARTITIONS), Flush())


def _points(storage: WorkerStorage, partition: int, offset: int, n: int) -> None:
    ts = every_10s(T0, T0 + n * 10_000)
    for i, msg in enumerate(encode_batches([(100 + partition, ts, np.ones(n))], 100_000, 1)):
        storage.ingest_points(partition, offset + i, msg)


async def test_a_check_cuts_the_longest_uncut_due_partitions_up_to_their_share(tables: StorageTables) -> None:  # noqa: F811
    storage = _storage(tables)
    now = time.monotonic()
    for p, uncut_s in zip(PARTITIONS, (5.0, 9.0, 7.0, 6.0), strict=True):
        _points(storage, p, 0, 10)
        storage.state(p).last_cut = now - uncut_s  # every partition is past its 4 s interval
    # 4 partitions, a check every second, a cut every 4 s: one cut per check keeps them all on time.
    assert [p for p, _, _ in await storage.cut_due(1.0)] == [1]
    assert [p for p, _, _ in await storage.cut_due(1.0)] == [2]
    assert [p for p, _, _ in await storage.cut_due(2.0)] == [3, 0]  # checks every 2 s: two per check
    assert await storage.cut_due(1.0) == []  # nothing in the heads, none due


async def test_a_head_over_its_size_is_cut_whatever_the_share(tables: StorageTables) -> None:  # noqa: F811
    storage = _storage(tables)
    now = time.monotonic()
    for p in PARTITIONS:
        _points(storage, p, 0, 10)
        storage.state(p).last_cut = now - 10.0 - p
    _points(storage, 0, 1, 600)  # partition 0: the most recently cut, but its head is over 500 points
    cut = [p for p, _, _ in await storage.cut_due(1.0)]
    assert cut == [3, 0]
    assert storage.state(0).head.points == 0
