"""Every RocksDB key layout of the worker, in one place (see docs/format/keys.md).

Keys are packed big-endian so RocksDB's byte order is (series, time) order and a
series' chunks are one contiguous range scan. Times are stored offset-binary
(ms + 2**63) so that negative timestamps would still sort before positive ones.
"""

from __future__ import annotations

import struct

import numpy as np

# 2 added the segments table; 3 replaced the wal table by the cutmarks table; 4 added SeriesBatch
# records (16-byte keys) to the series table
KEY_FORMAT_VERSION = 4
# Faust keeps its own bookkeeping key in every partition DB; scans skip it.
FAUST_RESERVED_PREFIX = b"__faust"

_SID_TIME = struct.Struct(">QQ")
_SEGMENT = struct.Struct(">QQQ")
_OFFSET = struct.Struct(">Q")
_TIME_BIAS = 1 << 63
CHUNK_KEY_LEN = _SID_TIME.size  # also the prefix of a segment key naming its block


# series table: the key of the mf.series record as it came (metricsflow/series_batch.py).


def chunk_key(sid: int, block_start_ms: int) -> bytes:
    """chunks table: (sid, block start) → one encoded block of raw samples."""
    return _SID_TIME.pack(sid, block_start_ms + _TIME_BIAS)


def parse_chunk_key(key: bytes) -> tuple[int, int]:
    sid, t = _SID_TIME.unpack(key)
    return sid, t - _TIME_BIAS


def chunk_range(sid: int, first_block_ms: int, last_block_ms: int) -> tuple[bytes, bytes]:
    """[lo, hi) keys covering blocks first..last of one series."""
    return chunk_key(sid, first_block_ms), chunk_key(sid, last_block_ms) + b"\x00"


def segment_key(sid: int, block_start_ms: int, seq: int) -> bytes:
    """segments table: (sid, block start, cut seq) → the samples one cut added to an unsealed block.

    The seq sorts a block's segments in the order they were cut (a later one wins a
    repeated timestamp); it is the first mf.points offset of the cut head, so a replay
    of the same messages rewrites the same key.
    """
    return _SEGMENT.pack(sid, block_start_ms + _TIME_BIAS, seq)


_SEGMENT_ROW = np.dtype([("sid", ">u8"), ("time", ">u8"), ("seq", ">u8")])


def segment_keys(sids: np.ndarray, block_starts_ms: np.ndarray, seq: int) -> list[bytes]:
    """``segment_key`` of each (sid, block start) with one seq, packed in one pass (a cut names a
    segment per series)."""
    rows = np.empty(len(sids), dtype=_SEGMENT_ROW)
    rows["sid"] = sids
    # uint64 arithmetic wraps: a negative start lands below the bias, as offset-binary puts it
    rows["time"] = np.asarray(block_starts_ms, dtype=np.int64).view(np.uint64) + np.uint64(_TIME_BIAS)
    rows["seq"] = seq
    data, size = rows.tobytes(), _SEGMENT.size
    return [data[i:i + size] for i in range(0, len(data), size)]


def parse_segment_key(key: bytes) -> tuple[int, int, int]:
    sid, t, seq = _SEGMENT.unpack(key)
    return sid, t - _TIME_BIAS, seq


def segment_range(sid: int, first_block_ms: int, last_block_ms: int) -> tuple[bytes, bytes]:
    """[lo, hi) keys covering every segment of blocks first..last of one series."""
    return _SID_TIME.pack(sid, first_block_ms + _TIME_BIAS), _SID_TIME.pack(sid, last_block_ms + _TIME_BIAS + 1)


# cutmarks table: one key per partition DB (the table is partitioned like mf.points).
CUT_OFFSET_KEY = b"cut_offset"


def encode_cut_offset(offset: int) -> bytes:
    """cutmarks table value: the first mf.points offset of the partition no cut has made durable."""
    return _OFFSET.pack(offset)


def decode_cut_offset(value: bytes) -> int:
    return _OFFSET.unpack(value)[0]
