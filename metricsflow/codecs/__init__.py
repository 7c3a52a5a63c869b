"""Chunk compression codecs: one module per encoding, one tag byte per block.

Every encoded block starts with a one-byte tag naming its codec, so blocks written
with different codecs can sit side by side and ``decode`` needs no context. The
layouts are documented in docs/format/chunks.md (chunk format version 1, tags 0-4); a new
layout gets a new tag, existing tags never change meaning.

Contract of every codec: ``encode`` takes int64 ms timestamps (sorted, unique) and
float64 values of equal length; ``decode`` returns them bit-exactly (NaN payloads
such as the Prometheus stale marker, -0.0 and +-Inf included). Corrupt or truncated
blocks raise ``InvalidInput("corrupt_chunk", ...)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from metricsflow.codecs._wire import MAX_POINTS, corrupt
from metricsflow.codecs.decimal_codec import DecimalCodec
from metricsflow.codecs.gorilla import GorillaCodec
from metricsflow.codecs.pco import PcodecCodec
from metricsflow.codecs.raw import RawCodec
from metricsflow.codecs.raw_decimal import RawDecimalCodec
from metricsflow.errors import InvalidInput

FORMAT_VERSION = 1
_I64_MAX = (1 << 63) - 1


class Codec(Protocol):
    """Turns one series' columns into one self-describing block and back."""

    tag: int  # first byte of every block this codec writes
    name: str

    def encode(self, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]: ...


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (RawCodec(), GorillaCodec(), PcodecCodec(), DecimalCodec(), DecimalCodec(sparse=True))
}
# Layouts read but not chosen as a chunk codec: tag 5, the segments' raw timestamps and decimal mantissas.
_BY_TAG: dict[int, Codec] = {codec.tag: codec for codec in (*CODECS.values(), RawDecimalCodec())}
TAGS = tuple(sorted(_BY_TAG))  # every tag ``decode`` reads

# Chosen by perf/bench_codecs.py (perf/RESULTS.md, "Chunk codecs"): the decimal codec is
# smallest on every workload (random walk 1.19 B/point vs pcodec 1.35, Gorilla 7.08; real
# node-exporter 0.48 vs 0.77 and 1.38) and decodes 6-26 M points per CPU-second, 0.5-1.1x
# pcodec. Its sparse variant (tag 4) is never larger and lists mostly-zero columns: an hour
# of node-exporter scraped every 5 s, 0.66 -> 0.58 B/point (perf/bench_real_node.py).
DEFAULT_CODEC = "decimal_sparse"


def encode(timestamps_ms: np.ndarray, values: np.ndarray, codec: str | None = None) -> bytes:
    """Encode one chunk with ``codec`` (default ``DEFAULT_CODEC``)."""
    chosen = CODECS.get(codec or DEFAULT_CODEC)
    if chosen is None:
        raise InvalidInput("unknown_codec", f"no codec named {codec!r}; have {sorted(CODECS)}")
    ts, vals = _validated(timestamps_ms, values)
    return chosen.encode(ts, vals)


def encode_many(blocks: list[tuple[np.ndarray, np.ndarray]], codec: str | None = None) -> list[bytes]:
    """``encode`` of every (timestamps, values) block, the same bytes; codecs that can do
    the work of many blocks at once (the decimal ones) do."""
    chosen = CODECS.get(codec or DEFAULT_CODEC)
    if chosen is None:
        raise InvalidInput("unknown_codec", f"no codec named {codec!r}; have {sorted(CODECS)}")
    checked = [_validated(ts, vals) for ts, vals in blocks]
    if isinstance(chosen, DecimalCodec):
        return chosen.encode_many(checked)
    return [chosen.encode(ts, vals) for ts, vals in checked]


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode a block written by any codec, dispatching on its tag byte."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if not data:
        raise corrupt("empty block")
    codec = _BY_TAG.get(data[0])
    if codec is None:
        raise corrupt(f"unknown codec tag {data[0]}")
    return codec.decode(data)


def _validated(timestamps_ms: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raw_ts = np.asarray(timestamps_ms)
    kind = raw_ts.dtype.kind
    if raw_ts.size and (kind not in "iu" or (kind == "u" and raw_ts.max() > _I64_MAX)):
        # A float or out-of-range column would be truncated or wrapped by the int64 cast.
        raise InvalidInput("invalid_chunk", f"timestamps must be int64 milliseconds, got {raw_ts.dtype}")
    ts = np.ascontiguousarray(raw_ts, dtype=np.int64)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != vals.shape:
        raise InvalidInput(
            "invalid_chunk", f"columns must be 1-d and equal length, got {ts.shape} {vals.shape}"
        )
    if ts.size > MAX_POINTS:
        raise InvalidInput("invalid_chunk", f"{ts.size} points exceed the block limit {MAX_POINTS}")
    if ts.size > 1 and not np.all(ts[1:] > ts[:-1]):
        raise InvalidInput("invalid_chunk", "timestamps must be strictly increasing")
    return ts, vals


__all__ = ["CODECS", "DEFAULT_CODEC", "FORMAT_VERSION", "TAGS", "Codec", "decode", "encode"]
