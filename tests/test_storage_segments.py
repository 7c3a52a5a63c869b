"""WorkerStorage over real RocksDB: segments per cut, folding at seal, cut offsets, replays and expiry."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Rdict, WriteBatch

from metricsflow import codecs, rollup
from metricsflow.codecs import raw_decimal
from metricsflow.codecs._wire import uvarint
from metricsflow.config import Settings
from metricsflow.pointbatch import encode_batches
from tables import keys, segments
from tables.storage import SEAL_BATCH_FIRST, SealBudget, StorageTables, WorkerStorage

HOUR_MS = 3_600_000
BLOCK_MS = 2 * HOUR_MS
T0 = 1_795_000_000_000 // BLOCK_MS * BLOCK_MS  # a block start
P = 0


class LocalStore:
    """The PartitionStore surface over one real RocksDB per partition, without a changelog."""

    def __init__(self, root: Path, name: str) -> None:
        self._root = root / name
        self._dbs: dict[int, Rdict] = {}

    def _db(self, partition: int) -> Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = Rdict(str(self._root / str(partition)))
        return self._dbs[partition]

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._db(partition)[key] = value

    def put_many(self, partition: int, items: list[tuple[bytes, bytes]]) -> None:
        batch = WriteBatch()
        for key, value in items:
            batch.put(key, value)
        self._db(partition).write(batch)

    def delete(self, partition: int, key: bytes) -> None:
        del self._db(partition)[key]

    def delete_many(self, partition: int, keys: list[bytes]) -> None:
        batch = WriteBatch()
        for key in keys:
            batch.delete(key)
        self._db(partition).write(batch)

    def holds(self, partition: int) -> bool:
        return False  # no changelog

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._db(partition).get(key)

    def scan(self, partition: int, lo: bytes = b"", hi: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self._db(partition).iter()
        it.seek(lo) if lo else it.seek_to_first()
        while it.valid() and (hi is None or it.key() < hi):
            yield it.key(), it.value()
            it.next()

    def items(self, partition: int = P) -> dict[bytes, bytes]:
        return dict(self.scan(partition))


class Flush:
    def __init__(self) -> None:
        self.fail_next = False
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("producer flush failed")


@pytest.fixture
def tables(tmp_path: Path) -> StorageTables:
    def store(name: str) -> LocalStore:
        return LocalStore(tmp_path, name)
    return StorageTables(cutmarks=store("cutmarks"), chunks=store("chunks"), segments=store("segments"),  # type: ignore[arg-type]
                         series=store("series"), rollups={"1m": store("rollup_1m"), "1h": store("rollup_1h")})


def make(tables: StorageTables, flush: Flush | None = None, **overrides: int | str) -> WorkerStorage:
    settings = Settings(**{"block_ms": BLOCK_MS, "out_of_order_window_ms": HOUR_MS, **overrides})
    return WorkerStorage(settings, tables, lambda: {P}, flush or Flush())


class Feed:
    """Writes mf.points messages with increasing offsets, like the consumer does."""

    def __init__(self) -> None:
        self.offset = 0
        self.sent: list[tuple[int, bytes]] = []

    def send(self, storage: WorkerStorage, sid: int, ts: list[int] | np.ndarray,
             vals: list[float] | np.ndarray) -> None:
        run = (sid, np.asarray(ts, np.int64), np.asarray(vals, np.float64))
        (msg,) = encode_batches([run], 100_000, 1)
        storage.ingest_points(P, self.offset, msg)
        self.sent.append((self.offset, msg))
        self.offset += 1


def every_10s(start_ms: int, end_ms: int) -> np.ndarray:
    return np.arange(start_ms, end_ms, 10_000, dtype=np.int64)


def seg_keys(tables: StorageTables) -> list[tuple[int, int, int]]:
    return [keys.parse_segment_key(k) for k in tables.segments.items()]  # type: ignore[attr-defined]


async def test_cuts_append_segments_and_seal_folds_them_once(tables: StorageTables) -> None:
    storage, feed = make(tables), Feed()
    ts = every_10s(T0, T0 + BLOCK_MS)
    for part in np.array_split(ts, 4):  # four cuts into one block
        feed.send(storage, 7, part, part / 1000.0)
        stats = await storage.cut(P)
        assert stats.segments == 1 and stats.sealed == 0
    assert [(sid, blk) for sid, blk, _ in seg_keys(tables)] == [(7, T0)] * 4
    assert tables.chunks.items() == {}  # type: ignore[attr-defined]
    got_ts, got_vals = storage.read(P, 7, T0, T0 + BLOCK_MS)
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_vals, ts / 1000.0)
    # Unsealed: the rollups come from raw at query time.
    r = storage.rollup_with_head(P, 7, "1h", T0, T0 + BLOCK_MS - 1)
    assert r.column("count").tolist() == [360.0, 360.0]

    # One hour (the window) past the block end seals it: one chunk, rollups, no segments.
    feed.send(storage, 7, [T0 + BLOCK_MS + HOUR_MS], [1.0])
    stats = await storage.cut(P)
    assert stats.sealed == 1 and stats.segments == 1 and stats.tombstones == 4
    assert [blk for _, blk, _ in seg_keys(tables)] == [T0 + BLOCK_MS]
    chunk = tables.chunks.get(P, keys.chunk_key(7, T0))
    assert chunk is not None and chunk == codecs.encode(ts, ts / 1000.0)
    stored = rollup.decode(tables.rollups["1m"].get(P, keys.chunk_key(7, T0)), rollup.TIERS_MS["1m"])
    assert stored.column("count").sum() == ts.size
    np.testing.assert_array_equal(storage.read(P, 7, T0, T0 + BLOCK_MS - 1)[0], ts)


async def test_a_block_read_while_a_cut_writes_is_read_again_after_it(tables: StorageTables) -> None:
    """The cut's segments go to RocksDB in batches after they are made: a fold cached before a batch
    (without it) must not outlive it. Fails if the cut drops cached blocks before the write."""
    storage, feed = make(tables), Feed()
    first, second = every_10s(T0, T0 + HOUR_MS), every_10s(T0 + HOUR_MS, T0 + BLOCK_MS)
    feed.send(storage, 7, first, first / 1000.0)
    await storage.cut(P)
    feed.send(storage, 7, second, second / 1000.0)
    put_many = tables.segments.put_many
    seen_during: list[int] = []

    def read_then_put(partition: int, items: list[tuple[bytes, bytes]]) -> None:
        seen_during.append(storage.read(P, 7, T0, T0 + BLOCK_MS)[0].size)  # head being cut + stored
        put_many(partition, items)

    tables.segments.put_many = read_then_put  # type: ignore[method-assign]
    stats = await storage.cut(P)
    assert stats.segments == 1 and seen_during == [first.size + second.size]
    np.testing.assert_array_equal(storage.read(P, 7, T0, T0 + BLOCK_MS)[0], np.concatenate([first, second]))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_seal_budget_refills_at_its_share_of_wall_time() -> None:
    clock = Clock()
    budget = SealBudget(share=0.1, burst_s=0.5, clock=clock)
    assert budget.available()
    budget.spend(0.6)
    assert not budget.available()  # 0.5 - 0.6 < 0
    clock.now += 0.5  # refills 0.05 s
    assert not budget.available()
    clock.now += 1.0
    assert budget.available()
    clock.now += 3600  # saved up to the burst only
    budget.spend(0.5)
    assert not budget.available()


async def test_seals_past_the_budget_wait_for_later_cuts_and_reads_stay_whole(tables: StorageTables) -> None:
    storage, feed = make(tables, head_cut_interval_s=0), Feed()
    clock = Clock()
    storage._seal_budget = SealBudget(share=0.1, burst_s=1e-9, clock=clock)
    ts = every_10s(T0, T0 + BLOCK_MS)
    sids = list(range(1, 41))
    for sid in sids:
        feed.send(storage, sid, ts, ts / 1000.0 + sid)
    await storage.cut(P)
    for sid in sids:  # past the window: every block of the first cut may seal now
        feed.send(storage, sid, [T0 + BLOCK_MS + HOUR_MS], [float(sid)])
    stats = await storage.cut(P)
    # The first batch of seals spends the burst (a batch is not split: the budget runs over by one batch).
    assert stats.deferred and stats.sealed == SEAL_BATCH_FIRST
    assert storage.seal_backlog(P) == len(sids) - SEAL_BATCH_FIRST
    for sid in sids:
        got_ts, got_vals = storage.read(P, sid, T0, T0 + BLOCK_MS + HOUR_MS)
        np.testing.assert_array_equal(got_ts, np.append(ts, T0 + BLOCK_MS + HOUR_MS))
        np.testing.assert_array_equal(got_vals, np.append(ts / 1000.0 + sid, sid))
    cuts = 0
    while storage.seal_backlog(P):
        clock.now += 10.0  # a second of seal time per cut
        assert await storage.maybe_cut(P) is not None  # nothing new in the head: the backlog makes it due
        cuts += 1
        assert cuts < 50
    assert len(tables.chunks.items()) == len(sids)  # type: ignore[attr-defined]
    assert [blk for _, blk, _ in seg_keys(tables)] == [T0 + BLOCK_MS] * len(sids)

    # Over the budget, points of a new series for a sealed block become a segment (a series'
    # own window decides what is too old), and a later cut seals the block.
    storage._seal_budget.spend(10.0)
    feed.send(storage, 99, [T0 + 5_000, T0 + 15_000], [-1.0, -2.0])
    stats = await storage.cut(P)
    assert stats.sealed == 0 and stats.segments == 1 and storage.seal_backlog(P) == 1
    assert storage.read(P, 99, T0, T0 + BLOCK_MS)[1].tolist() == [-1.0, -2.0]
    clock.now += 200.0
    stats = await storage.cut(P)
    assert stats.sealed == 1 and storage.seal_backlog(P) == 0
    assert tables.chunks.get(P, keys.chunk_key(99, T0)) is not None
    assert storage.read(P, 99, T0, T0 + BLOCK_MS)[1].tolist() == [-1.0, -2.0]


async def test_out_of_order_and_duplicates_into_an_unsealed_block_read_once(tables: StorageTables) -> None:
    storage, feed = make(tables), Feed()
    ts = every_10s(T0, T0 + 600_000)
    feed.send(storage, 1, ts, np.zeros(ts.size))
    await storage.cut(P)
    feed.send(storage, 1, [ts[3], ts[3] + 5_000], [9.0, 5.0])  # a correction and a late sample
    feed.send(storage, 1, ts[:10], np.zeros(10))  # duplicates
    await storage.cut(P)
    got_ts, got_vals = storage.read(P, 1, T0, T0 + BLOCK_MS)
    assert got_ts.size == ts.size + 1 and bool((np.diff(got_ts) > 0).all())
    assert got_vals[got_ts == ts[3]].tolist() == [0.0]  # the duplicate of ts[3] came after the correction
    assert got_vals[got_ts == ts[3] + 5_000].tolist() == [5.0]
    assert storage.rollup_with_head(P, 1, "1h", T0, T0).column("count").tolist() == [ts.size + 1]


async def test_out_of_order_into_a_sealed_block_rewrites_its_chunk_and_rollups(tables: StorageTables) -> None:
    storage, feed = make(tables), Feed()
    lagging = every_10s(T0, T0 + BLOCK_MS)
    feed.send(storage, 2, lagging, np.ones(lagging.size))
    feed.send(storage, 3, [T0 + 2 * BLOCK_MS], [1.0])  # moves the partition's horizon past block T0
    stats = await storage.cut(P)
    assert stats.sealed == 1  # series 2's block was sealed straight away
    # Read once: its decoded rollup block is cached now, and the rewrite below must replace it.
    assert storage.rollup_with_head(P, 2, "1h", T0, T0 + BLOCK_MS - 1).column("max").tolist() == [1.0, 1.0]
    # Series 2's own newest is T0 + 2h - 10s, so a sample at T0 + 1h30m is inside its window.
    feed.send(storage, 2, [T0 + 90 * 60_000 + 1], [100.0])
    stats = await storage.cut(P)
    assert stats.sealed == 1 and stats.segments == 0 and seg_keys(tables) == [(3, T0 + 2 * BLOCK_MS, 0)]
    got_ts, got_vals = storage.read(P, 2, T0, T0 + BLOCK_MS - 1)
    assert got_ts.size == lagging.size + 1 and got_vals.max() == 100.0
    stored = rollup.decode(tables.rollups["1h"].get(P, keys.chunk_key(2, T0)), rollup.TIERS_MS["1h"])
    assert stored.column("count").tolist() == [360.0, 361.0] and stored.column("max").tolist() == [1.0, 100.0]
    assert storage.rollup_with_head(P, 2, "1h", T0, T0 + BLOCK_MS - 1).column("max").tolist() == [1.0, 100.0]


async def test_a_replay_after_a_failed_cut_rewrites_the_same_bytes(tables: StorageTables, tmp_path: Path) -> None:
    def run(storage: WorkerStorage, feed: Feed) -> None:
        a = every_10s(T0, T0 + 1_800_000)
        feed.send(storage, 4, a, a % 7)
        feed.send(storage, 5, a[::2], a[::2] % 3)

    clean_tables = StorageTables(**{f: LocalStore(tmp_path / "clean", f) for f in  # type: ignore[arg-type]
                                    ("cutmarks", "chunks", "segments", "series")},
                                 rollups={t: LocalStore(tmp_path / "clean", t) for t in ("1m", "1h")})  # type: ignore[misc]
    clean, clean_feed = make(clean_tables), Feed()
    run(clean, clean_feed)
    await clean.cut(P)

    flush = Flush()
    storage, feed = make(tables, flush), Feed()
    run(storage, feed)
    flush.fail_next = True  # segments are in RocksDB, the cut offset did not move: a crash at step 4
    with pytest.raises(ConnectionError):
        await storage.cut(P)
    assert storage.stats()["head_points"] > 0  # nothing lost from memory either
    assert storage.cut_offset(P) is None
    # Restart: state is rebuilt from the tables, and mf.points is replayed from the cut offset
    # (none yet: from the start), then the broker redelivers the uncommitted messages once more.
    storage = make(tables, flush)
    assert storage.cut_offset(P) is None
    for offset, msg in feed.sent + feed.sent:
        storage.ingest_points(P, offset, msg)
    await storage.cut(P)
    for name in ("segments", "chunks", "cutmarks"):
        assert getattr(tables, name).items() == getattr(clean_tables, name).items(), name
    ts, _ = storage.read(P, 4, T0, T0 + BLOCK_MS)
    assert ts.size == 180


async def test_segments_expire_with_the_raw_retention(tables: StorageTables) -> None:
    storage, feed = make(tables, raw_retention_ms=24 * HOUR_MS), Feed()
    feed.send(storage, 6, every_10s(T0, T0 + 600_000), np.ones(60))
    await storage.cut(P)
    assert len(seg_keys(tables)) == 1
    assert storage.expire(P, T0 + 10 * HOUR_MS)["segments"] == 0
    deleted = storage.expire(P, T0 + BLOCK_MS + 24 * HOUR_MS)
    assert deleted["segments"] == 1 and seg_keys(tables) == []
    assert storage.read(P, 6, T0, T0 + BLOCK_MS)[0].size == 0
    assert storage.stats()["unsealed_blocks"] == 0


async def test_retention_seals_unsealed_blocks_before_dropping_their_raw_data(tables: StorageTables) -> None:
    storage, feed = make(tables, raw_retention_ms=24 * HOUR_MS), Feed()
    ts = every_10s(T0, T0 + 600_000)
    feed.send(storage, 11, ts, np.arange(60.0))
    await storage.cut(P)  # the partition's newest sample is in this block: it stays unsealed
    deleted = await storage.apply_retention(P, T0 + BLOCK_MS + 24 * HOUR_MS)
    assert deleted["raw"] == 1 and deleted["segments"] == 0  # sealed into a chunk, then the chunk expired
    assert seg_keys(tables) == [] and tables.chunks.items() == {}  # type: ignore[attr-defined]
    assert storage.read(P, 11, T0, T0 + BLOCK_MS)[0].size == 0
    minutes = storage.rollup_with_head(P, 11, "1m", T0, T0 + BLOCK_MS - 1)
    assert minutes.column("count").tolist() == [6.0] * 10 and minutes.column("last")[-1] == 59.0


async def test_state_reloads_pending_segments_and_seals_them_later(tables: StorageTables) -> None:
    storage, feed = make(tables), Feed()
    feed.send(storage, 8, every_10s(T0, T0 + 600_000), np.ones(60))
    await storage.cut(P)
    storage = make(tables)  # a restart: pending blocks come back from the segments table
    assert storage.stats()["unsealed_blocks"] == 0  # loaded lazily
    assert storage.state(P).pending == {T0: {8}}
    feed.send(storage, 8, [T0 + 3 * HOUR_MS + 1], [2.0])
    stats = await storage.cut(P)
    assert stats.sealed == 1 and [blk for _, blk, _ in seg_keys(tables)] == [T0 + BLOCK_MS]
    assert storage.read(P, 8, T0, T0 + 4 * HOUR_MS)[0].size == 61


@pytest.mark.parametrize("runs", [[0, 1], [0, 3, 3, 7], [0, 0]])
def test_segment_values_are_raw_chunk_blocks(runs: list[int]) -> None:
    ts = np.array([-5, 1, 2, 9, 10, 11, 12], np.int64)
    vals = np.array([np.nan, -0.0, 1.5, np.inf, 2.0, 3.0, 4.0])
    for (a, b), value in zip(itertools.pairwise(runs), segments.encode_runs(ts, vals, runs), strict=True):
        got_ts, got_vals = codecs.decode(value)
        np.testing.assert_array_equal(got_ts, ts[a:b])
        assert got_vals.tobytes() == vals[a:b].tobytes()
        assert value == codecs.encode(ts[a:b], vals[a:b], "raw")
        assert segments.last_timestamp(value) == (int(ts[b - 1]) if b > a else None)


SPAN_LENGTHS = (st.lists(st.sampled_from([0, 3, 30]), min_size=24, max_size=40)  # coded as rows by length
                | st.lists(st.integers(0, 40), max_size=40)  # mostly span by span
                | st.lists(st.sampled_from([3, segments.JOIN_MIN_POINTS - 1, segments.JOIN_MIN_POINTS, 70]),
                           min_size=24, max_size=40)  # long ones joined one by one, short ones as rows
                | st.lists(st.integers(segments.JOIN_MIN_POINTS, 90), max_size=12))  # all long
SPAN_VALUES = [st.floats(allow_nan=True),  # mostly not decimals: raw blocks
               st.integers(-(10**6), 10**6).map(lambda m: m / 100),  # a cut's gauges: raw decimal blocks
               st.sampled_from([0.5, 1.0, 1e300, -0.0, float("nan")])]  # decimals, and a few spans with others


@settings(max_examples=150, deadline=None)
@given(lengths=SPAN_LENGTHS, decimal=st.booleans(), gaps=st.booleans(), data=st.data())
def test_segments_coded_together_equal_the_reference_span_by_span(lengths: list[int], decimal: bool, gaps: bool,
                                                                 data: st.DataObject) -> None:
    """The cut codes short spans of one length as rows of one array and long ones one by one; each value is
    still the raw block of its span, or with ``decimal`` the raw decimal block of its mantissas at the digits
    and width the call found, and decodes to its points bit for bit."""
    total = sum(lengths) * (3 if gaps else 1)  # with gaps the spans hold a third of the columns
    ts = np.cumsum(np.asarray(data.draw(st.lists(st.integers(1, 10**6), min_size=total, max_size=total)),
                              dtype=np.int64)) - 10**6
    values = data.draw(st.sampled_from(SPAN_VALUES))
    vals = np.asarray(data.draw(st.lists(values, min_size=total, max_size=total)), np.float64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths else np.zeros(0, np.int64)
    if gaps:
        starts *= 3
    order = np.asarray(data.draw(st.permutations(range(len(lengths)))), dtype=np.intp)  # spans in any order
    starts, spans = starts[order], np.asarray(lengths, np.int64)[order]
    got = segments.encode_spans(ts, vals, starts, spans, decimal)
    for block, a, n in zip(got, starts.tolist(), spans.tolist(), strict=True):
        got_ts, got_vals = codecs.decode(block)
        np.testing.assert_array_equal(got_ts, ts[a:a + n])
        assert got_vals.tobytes() == vals[a:a + n].tobytes()
        assert segments.last_timestamp(block) == (int(ts[a + n - 1]) if n else None)
        if block[0] == raw_decimal.TAG:
            assert decimal and n
            middle = 1 + len(uvarint(n)) + 8 * n
            k, width = block[middle], block[middle + 1]
            mantissas = np.rint(vals[a:a + n] * 10.0**k).astype(raw_decimal.WIDTHS[width])
            assert block == raw_decimal.encode(ts[a:a + n], mantissas, k)
        else:
            assert block == codecs.encode(ts[a:a + n], vals[a:a + n], "raw")


def test_decimal_segments_where_every_value_is_one_else_raw() -> None:
    """A cut of 2-decimal gauges writes raw decimal blocks (a third smaller after zstd); the one span with
    a NaN stays raw, and so does everything when the codec is raw. Fails without the decimal coding."""
    rng = np.random.default_rng(5)
    lengths = np.array([3] * 30 + [70] * 4 + [0, 1, 2], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ts = np.arange(int(lengths.sum()), dtype=np.int64) * 10_000
    vals = np.round(rng.normal(50, 10, ts.size), 2)
    vals[starts[31] + 5] = np.nan
    order = rng.permutation(lengths.size)
    blocks = segments.encode_spans(ts, vals, starts[order], lengths[order], decimal=True)
    tags = {int(i): block[0] for i, block in zip(order, blocks, strict=True)}
    assert tags[31] == 0 and tags[lengths.size - 3] == 0  # the NaN's span; the empty span
    assert all(tag == raw_decimal.TAG for i, tag in tags.items() if i not in (31, lengths.size - 3))
    decimal_bytes = sum(map(len, blocks))
    assert all(block[0] == 0 for block in segments.encode_spans(ts, vals, starts, lengths))
    assert decimal_bytes < 0.75 * sum(map(len, segments.encode_spans(ts, vals, starts, lengths)))


async def test_segments_of_both_codecs_in_one_block_read_and_seal_whole(tables: StorageTables) -> None:
    """A worker upgraded to raw decimal segments over segments a worker with MF_SEGMENT_CODEC=raw wrote."""
    ts = every_10s(T0, T0 + BLOCK_MS)
    vals = (ts - T0) / 10_000 % 5_000 / 100  # 2-decimal gauges
    (first, second), (first_vals, second_vals) = np.array_split(ts, 2), np.array_split(vals, 2)
    old, feed = make(tables, segment_codec="raw"), Feed()
    feed.send(old, 7, first, first_vals)
    assert (await old.cut(P)).decimal_segments == 0
    new = make(tables)
    feed.send(new, 7, second, second_vals)
    stats = await new.cut(P)
    assert stats.segments == stats.decimal_segments == 1
    assert [value[0] for value in tables.segments.items().values()] == [0, raw_decimal.TAG]  # type: ignore[attr-defined]
    got_ts, got_vals = new.read(P, 7, T0, T0 + BLOCK_MS)
    np.testing.assert_array_equal(got_ts, ts)
    assert got_vals.tobytes() == vals.tobytes()
    feed.send(new, 7, [T0 + BLOCK_MS + HOUR_MS], [1.0])
    stats = await new.cut(P)
    assert stats.sealed == 1 and tables.chunks.get(P, keys.chunk_key(7, T0)) == codecs.encode(ts, vals)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(-(2**62), 2**62)), max_size=20),
       seq=st.integers(0, 2**63 - 1))
def test_segment_keys_packed_together_equal_one_by_one(rows: list[tuple[int, int]], seq: int) -> None:
    sids = np.array([r[0] for r in rows], dtype=np.uint64)
    starts = np.array([r[1] for r in rows], dtype=np.int64)
    assert keys.segment_keys(sids, starts, seq) == [keys.segment_key(sid, t, seq) for sid, t in rows]


async def test_a_seal_whose_flush_failed_is_redone_by_the_next_cut(tables: StorageTables) -> None:
    flush = Flush()
    storage, feed = make(tables, flush), Feed()
    feed.send(storage, 9, every_10s(T0, T0 + 600_000), np.ones(60))
    await storage.cut(P)
    feed.send(storage, 10, [T0 + 4 * HOUR_MS], [1.0])  # another series moves the horizon past block T0
    flush.fail_next = True
    with pytest.raises(ConnectionError):
        await storage.cut(P)
    # The chunk may be written, but the segments stay until a flush made it durable.
    assert (9, T0) in [(sid, blk) for sid, blk, _ in seg_keys(tables)]
    assert storage.state(P).pending.get(T0) == {9}
    stats = await storage.cut(P)
    assert stats.tombstones == 1 and (9, T0) not in [(sid, blk) for sid, blk, _ in seg_keys(tables)]
    assert T0 not in storage.state(P).pending
    assert storage.read(P, 9, T0, T0 + BLOCK_MS)[0].size == 60


@pytest.mark.parametrize("repeat", [False, True])
def test_points_older_than_the_window_are_refused_per_run(tables: StorageTables, repeat: bool) -> None:
    storage = make(tables)
    newest = T0 + 3 * HOUR_MS
    (first,) = encode_batches([(12, np.array([newest], np.int64), np.ones(1))], 100, 1)
    storage.ingest_points(P, 0, first)
    runs = [(12, np.array([newest - 2 * HOUR_MS, newest - 600_000], np.int64), np.ones(2)),
            (13, np.array([T0], np.int64), np.ones(1))]
    if repeat:  # a foreign producer may repeat a series in one batch: later runs see the earlier ones
        runs.append((13, np.array([T0 - 2 * HOUR_MS, T0 + 3 * HOUR_MS], np.int64), np.ones(2)))
    (msg,) = encode_batches(runs, 100, 1)
    stats = storage.ingest_points(P, 1, msg)
    assert stats.points == (3 if repeat else 2)  # T0 - 2h is refused against the run before it
    st = storage.state(P)
    assert st.newest[12] == newest and st.newest[13] == (T0 + 3 * HOUR_MS if repeat else T0)
    assert st.top_ms == newest
    assert storage.read(P, 12, 0, newest)[0].tolist() == [newest - 600_000, newest]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.integers(1, 6), st.lists(st.integers(-3, 8), min_size=1, max_size=3)),
                         min_size=1, max_size=5), min_size=1, max_size=12))
def test_refusals_are_those_of_the_runs_checked_one_by_one_in_order(tables: StorageTables,
                                                                   messages: list[list[tuple[int, list[int]]]]) -> None:
    """Whether a message is checked series by series or its newest timestamps are raised later,
    the points kept are those a run-by-run check in message order keeps (a replay depends on it)."""
    half = HOUR_MS // 2
    storage, newest = make(tables, out_of_order_window_ms=HOUR_MS), {}
    for offset, message in enumerate(messages):
        runs, want = [], 0
        for sid, steps in message:
            ts = np.array(sorted({T0 + k * half for k in steps}), np.int64)
            runs.append((sid, ts, np.ones(ts.size)))
            known = newest.get(sid)
            kept = ts if known is None else ts[ts >= known - HOUR_MS]
            want += kept.size
            newest[sid] = max(int(ts.max()), known if known is not None else int(ts.max()))
        (msg,) = encode_batches(runs, 1_000, 1)
        assert storage.ingest_points(P, offset, msg).points == want
    st_ = storage.state(P)
    assert {sid: st_.newest[sid] for sid in newest} == newest and st_.top_ms == max(newest.values())


async def test_the_cut_offset_follows_the_flushed_cuts_only(tables: StorageTables) -> None:
    flush = Flush()
    storage, feed = make(tables, flush), Feed()
    a = every_10s(T0, T0 + 600_000)
    feed.send(storage, 1, a, a % 5)
    feed.send(storage, 2, a, a % 3)
    await storage.cut(P)
    assert storage.cut_offset(P) == 2  # offsets 0 and 1 are in segments
    b = every_10s(T0 + 600_000, T0 + 1_200_000)
    feed.send(storage, 1, b, b % 5)
    flush.fail_next = True
    with pytest.raises(ConnectionError):
        await storage.cut(P)
    assert storage.cut_offset(P) == 2  # never ahead of its data
    assert make(tables, flush).cut_offset(P) == 2  # and that is what a restart reads
    await storage.cut(P)
    assert make(tables, flush).cut_offset(P) == 3


async def test_a_restart_replays_from_the_cut_offset_to_the_same_bytes(tables: StorageTables, tmp_path: Path) -> None:
    """Points consumed but not cut are rebuilt from mf.points; replaying the cut range once more changes nothing."""
    def clean_tables(name: str) -> StorageTables:
        return StorageTables(**{f: LocalStore(tmp_path / name, f) for f in  # type: ignore[arg-type]
                                ("cutmarks", "chunks", "segments", "series")},
                             rollups={t: LocalStore(tmp_path / name, t) for t in ("1m", "1h")})  # type: ignore[misc]

    def first(storage: WorkerStorage, feed: Feed) -> None:
        a = every_10s(T0, T0 + 1_800_000)
        feed.send(storage, 4, a, a % 7)
        feed.send(storage, 5, a[::2], a[::2] % 3)

    def second(storage: WorkerStorage, feed: Feed) -> None:
        b = every_10s(T0 + 1_800_000, T0 + 3_600_000)
        feed.send(storage, 4, b, b % 11)
        feed.send(storage, 4, b[:10], b[:10] + 0.5)  # a later message rewrites some samples: later wins

    ref_tables = clean_tables("ref")
    ref, ref_feed = make(ref_tables), Feed()
    first(ref, ref_feed)
    await ref.cut(P)
    second(ref, ref_feed)
    await ref.cut(P)

    storage, feed = make(tables), Feed()
    first(storage, feed)
    await storage.cut(P)
    second(storage, feed)  # consumed (and committed by Faust), then the worker dies before the cut
    storage = make(tables)
    start = storage.cut_offset(P)
    assert start == 2
    assert storage.read(P, 4, T0 + 1_800_000, T0 + 3_600_000)[0].size == 0  # lost without the replay
    # The replay may start early (a lost cut mark): messages already cut are rewritten idempotently.
    for offset, msg in feed.sent[start - 1:]:
        storage.ingest_points(P, offset, msg)
    await storage.cut(P)
    ts, vals = storage.read(P, 4, T0, T0 + 3_600_000)
    want_ts, want_vals = ref.read(P, 4, T0, T0 + 3_600_000)
    np.testing.assert_array_equal(ts, want_ts)
    np.testing.assert_array_equal(vals, want_vals)
    assert ts.size == 360 and vals[180] == T0 + 1_800_000 + 0.5
    assert storage.cut_offset(P) == ref.cut_offset(P) == 4


@pytest.mark.parametrize("segments_lost", [False, True])
async def test_a_replay_after_a_lost_cut_offset_keeps_every_point(tables: StorageTables, segments_lost: bool) -> None:
    """A cut whose mark was lost: the replay judges the messages' age as the first ingest did."""
    storage, feed = make(tables), Feed()
    early = every_10s(T0 + BLOCK_MS, T0 + BLOCK_MS + 6_600_000)  # 1 h 50 min of backfill in one message
    late = every_10s(T0 + BLOCK_MS + 6_600_000, T0 + BLOCK_MS + 6_900_000)
    feed.send(storage, 9, early, early % 13)
    feed.send(storage, 9, late, late % 13)
    await storage.cut(P)
    assert storage.read(P, 9, T0, T0 + 2 * BLOCK_MS)[0].size == early.size + late.size
    tables.cutmarks.delete(P, keys.CUT_OFFSET_KEY)  # the mark never reached its changelog
    if segments_lost:  # nor did the segments
        for key in list(tables.segments.items()):  # type: ignore[attr-defined]
            tables.segments.delete(P, key)
    storage = make(tables)
    for offset, msg in feed.sent:  # the replay from the start: no durable cut offset
        storage.ingest_points(P, offset, msg)
    await storage.cut(P)
    ts, vals = storage.read(P, 9, T0, T0 + 2 * BLOCK_MS)
    np.testing.assert_array_equal(ts, np.concatenate([early, late]))
    np.testing.assert_array_equal(vals, np.concatenate([early, late]) % 13)
    assert storage.cut_offset(P) == 2
