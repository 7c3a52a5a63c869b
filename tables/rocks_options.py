"""RocksDB options of the worker's tables: Faust's own, with zstd block compression (LZ4 for
the segments) and no write-ahead log.

Faust's rocksdict driver builds its ``Options`` in ``RocksDBOptions.as_options`` without a
compression setting, so RocksDB uses its default (Snappy). Chunks are already compressed, but
per-chunk headers (t0, step, flags) are nearly equal across the series of a block and keys
share prefixes: zstd takes 0.543 → 0.513 B/point off an hour of real node-exporter chunks
where Snappy stopped (perf/RESULTS.md, "Real data on disk"). Blocks already written keep their
compression; RocksDB reads both.

A table may ask for more through its Faust ``options`` mapping (``table_options``): Faust
hands the mapping to ``RocksDBOptions`` as ``extra_options``, where ``as_options`` reads it.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_metricsflow_zstd"
_NO_WAL = "_metricsflow_no_wal"
BLOCK_SIZE = "mf_block_size"
ZSTD_LEVEL = "mf_zstd_level"
LZ4 = "mf_lz4"
# For tables written rarely and read whole (the series table, read once when a partition
# loads): labels repeat across series, so 64 KB blocks hold many series for zstd to share,
# 64.4 → 41.6 B per series on an hour of node-exporter (perf/RESULTS.md). Level 9, not 19:
# 19 compressed ~2 MB/s, 130 µs of a flush thread per load-workload series (1.3 CPU-s per
# 10,000, more than the worker's whole ingest of their points), 9 takes 2 µs for 4 % more
# bytes (31.6 against 30.5 B per node-exporter series, 23 against 22 for the load workload).
COLD_TABLE_OPTIONS = {BLOCK_SIZE: 64 * 1024, ZSTD_LEVEL: 9}
# For tables written once per block at its seal and read by range (chunks, rollups): 64 KB
# blocks at zstd level 12 let zstd see ~100 chunks at once, 0.437 -> 0.400 B/point on an hour of
# node-exporter (16 KB at level 3: 0.420; 64 KB at level 19: 0.398 for twice level 12's CPU).
# Reads decompress a block once into the block cache; seals write each block once.
SEALED_TABLE_OPTIONS = {BLOCK_SIZE: 64 * 1024, ZSTD_LEVEL: 12}
# For the segments (tables/segments.py): raw 16 B points that live until their block is sealed
# (2 h and the out-of-order window), every byte flushed by a RocksDB thread once. zstd stored
# the load's 30-point segments in 7.5 B per point for 126-189 ns per point of flush (1.1-1.4
# CPU-s for the M load, a fifth of the worker's CPU); LZ4 stores 10.5 B for 29-46 ns
# (perf/bench_table_writes.py): 3 B more per point of the unsealed 2-2.5 h, ~270 GB more
# cluster-wide at 10 M points/s, against ~150 TB of sealed tiers in a year (docs/capacity.md).
# In 16 KB blocks instead of 4 KB, LZ4 sees four times the context for the same work: a bulk
# cut's 720-point segments 9.6 -> 7.0 B per point and 62 -> 42 ns per point of flush, 30-point
# ones 10.6 -> 6.9 B and 37 -> 27 ns; a cold read of one segment decompresses its 16 KB
# (19 -> 22 µs for 720 points, 11 -> 25 µs for 30; 64 KB blocks: 38-53 µs).
TRANSIENT_TABLE_OPTIONS = {LZ4: 1, BLOCK_SIZE: 16 * 1024}
_BY_TABLE = {"series": COLD_TABLE_OPTIONS, "chunks": SEALED_TABLE_OPTIONS,
             "rollup_1m": SEALED_TABLE_OPTIONS, "rollup_1h": SEALED_TABLE_OPTIONS,
             "segments": TRANSIENT_TABLE_OPTIONS}


def table_options(name: str) -> dict[str, int] | None:
    """The Faust ``options`` of the worker's table ``name`` (None: Faust's, with zstd)."""
    return _BY_TABLE.get(name)


def use_zstd() -> None:
    """Make every RocksDB that Faust opens from now on compress its blocks with zstd, or LZ4 where its
    table's options ask (``LZ4``), with the table's block size and level (idempotent)."""
    import rocksdict
    from faust.stores.rocksdb import RocksDBOptions

    if getattr(RocksDBOptions.as_options, _PATCHED, False):
        return
    faust_options = RocksDBOptions.as_options

    def as_options(self: RocksDBOptions) -> Any:
        options = faust_options(self)
        if self.use_rocksdict:  # Faust's rocksdict branch ignores extra_options; they are ours
            extra = getattr(self, "extra_options", None) or {}
            codec = rocksdict.DBCompressionType.lz4() if extra.get(LZ4) else rocksdict.DBCompressionType.zstd()
            options.set_compression_type(codec)
            if ZSTD_LEVEL in extra:
                # window bits, level, strategy, dictionary bytes: RocksDB's defaults but the level
                options.set_compression_options(-14, int(extra[ZSTD_LEVEL]), 0, 0)
            if BLOCK_SIZE in extra:
                # Faust's table factory (bloom filter, block cache, index) with another block size
                table = rocksdict.BlockBasedOptions()
                table.set_bloom_filter(self.bloom_filter_size, block_based=True)
                table.set_block_cache(rocksdict.Cache(self.block_cache_size))
                table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
                table.set_block_size(int(extra[BLOCK_SIZE]))
                options.set_block_based_table_factory(table)
        return options

    setattr(as_options, _PATCHED, True)
    RocksDBOptions.as_options = as_options  # type: ignore[method-assign]


def skip_wal() -> None:
    """Make every RocksDB that Faust opens from now on write without its write-ahead log (idempotent).

    A table's changelog topic is what recovers it: a worker commits an ``mf.points`` offset
    only after what it read is in a changelog (../shared/DESIGN.md, invariant 1), and a
    partition taken over by another worker is rebuilt from the changelog alone. The log
    duplicated every byte the worker puts (segments, chunks, rollups, series: ~12 B per point
    of the load workload) at ~2.9 µs per KB on the event loop. After a kill -9 a table loses
    what its memtables held since their last flush, with Faust's offset in the same
    memtables, so Faust replays the changelog from the older offset, as on a takeover; a
    clean close flushes them (RocksDB's ``avoid_flush_during_shutdown`` is off).
    """
    import rocksdict
    from faust.stores.rocksdb import RocksDBOptions

    if getattr(RocksDBOptions.open, _NO_WAL, False):
        return
    faust_open = RocksDBOptions.open

    def open_without_wal(self: RocksDBOptions, path: Any, *, read_only: bool = False) -> Any:
        db = faust_open(self, path, read_only=read_only)
        if self.use_rocksdict and not read_only:
            options = rocksdict.WriteOptions()
            options.disable_wal = True
            db.set_write_options(options)
        return db

    setattr(open_without_wal, _NO_WAL, True)
    RocksDBOptions.open = open_without_wal  # type: ignore[method-assign]
