"""Thin wrapper over pcodec's *wrapped* format, shared by the pcodec and decimal codecs.

We use the wrapped API rather than ``standalone``: the standalone file repeats a
magic, a version, a count and a terminator (~13 bytes, 1.5% of a 720-point chunk)
that our block header already carries. A block stores pcodec's 2-byte wrapped
header once, then per column the chunk metadata followed by one page.

Decoding untrusted bytes: pcodec 1.x decoders have had allocation bugs driven by
chunk metadata (lookback ``window_n_log`` up to 2^32 entries: finding 5 of
``fuzz/FINDINGS.md`` in the pcodec repository). Our encoders only ever emit the
``None`` and ``Consecutive`` delta encodings, so the decoder refuses any other
variant before pcodec sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import numpy as np
from pcodec import ChunkConfig, DeltaSpec, ModeSpec, PagingSpec, wrapped

from metricsflow.codecs._wire import MAX_POINTS, Reader, corrupt

_T = TypeVar("_T")
DType = Literal["i64", "f64"]
_NUMPY_DTYPE = {"i64": np.int64, "f64": np.float64}

_COMPRESSOR = wrapped.FileCompressor()
HEADER: bytes = _COMPRESSOR.write_header()  # b"\x04\x01" (format 4.1) with pcodec 1.1
HEADER_SIZE = 2
_DECOMPRESSORS: dict[bytes, wrapped.FileDecompressor] = {}

# Level 8 is pcodec's default. On workload A mantissa deltas levels 8-12 all give
# 1.160-1.161 B/value and level 4 gives 1.167 (+0.6 %), but level 4 compresses a
# 720-value column in ~160 µs against ~540 µs at level 8 (this machine, pcodec 1.1):
# cuts encode every touched block, so the worker takes level 4. The level is an
# encoder choice only; decoding does not depend on it.
_LEVEL = 4
_ONE_PAGE = PagingSpec.equal_pages_up_to(MAX_POINTS)


def config(delta_order: int = 0) -> ChunkConfig:
    """Chunk config with a fixed delta order (0 = none) and automatic mode detection."""
    delta = DeltaSpec.try_consecutive(delta_order) if delta_order else DeltaSpec.no_op()
    return ChunkConfig(
        compression_level=_LEVEL, delta_spec=delta, mode_spec=ModeSpec.auto(), paging_spec=_ONE_PAGE
    )


def compress(column: np.ndarray, chunk_config: ChunkConfig) -> bytes:
    """Chunk metadata + one page for a non-empty int64 or float64 column."""
    chunk = _COMPRESSOR.chunk_compressor(np.ascontiguousarray(column), chunk_config)
    if len(chunk.n_per_page()) != 1:
        raise AssertionError("pcodec split a column into several pages")
    encoded: bytes = chunk.write_meta() + chunk.write_page(0)
    return encoded


def file_decompressor(header: bytes) -> wrapped.FileDecompressor:
    found = _DECOMPRESSORS.get(header)
    if found is None:
        found = _guard(lambda: wrapped.FileDecompressor.new(header)[0], "header")
        if len(_DECOMPRESSORS) < 16:  # only a handful of format versions ever exist
            _DECOMPRESSORS[header] = found
    return found


def decompress(reader: Reader, file: wrapped.FileDecompressor, n: int, dtype: DType) -> np.ndarray:
    """Read one column of ``n`` numbers at the reader's position and advance past it."""
    src = reader.buf[reader.pos :]
    _check_meta(src)
    chunk, meta_size = _guard(lambda: file.chunk_decompressor(src, dtype), "chunk metadata")
    out = np.empty(n, dtype=_NUMPY_DTYPE[dtype])
    page = src[meta_size:]
    progress, page_size = _guard(lambda: chunk.read_page_into(page, n, out), "page")
    if progress.n_processed != n or not progress.finished:
        raise corrupt(f"pcodec page holds {progress.n_processed} of {n} numbers")
    reader.pos += meta_size + page_size
    return out


def _guard(call: Callable[[], _T], what: str) -> _T:
    try:
        return call()
    except Exception as exc:
        raise corrupt(f"pcodec {what}: {exc}") from exc
    except BaseException as exc:  # pyo3 maps Rust panics to PanicException(BaseException)
        if type(exc).__name__ != "PanicException":
            raise
        raise corrupt(f"pcodec {what} panicked: {exc}") from exc


# Extra bits after the 4-bit mode for 64-bit numbers: Classic, IntMult, FloatMult, FloatQuant.
_MODE_EXTRA_BITS = {0: 0, 1: 64, 2: 64, 3: 8}
_DICT_MODE = 4
_ALLOWED_DELTAS = (0, 1)  # None, Consecutive


def _check_meta(src: bytes) -> None:
    """Refuse chunk metadata our encoder cannot have written (see module docstring)."""
    if not src:
        raise corrupt("missing pcodec column")
    mode = src[0] & 0x0F
    if mode in _MODE_EXTRA_BITS:
        bit = 4 + _MODE_EXTRA_BITS[mode]
    elif mode == _DICT_MODE:
        # 25-bit dictionary length, zero padding to a byte, then 64-bit raw entries.
        head = int.from_bytes(src[:5].ljust(5, b"\x00"), "little")
        dict_len = (head >> 4) & ((1 << 25) - 1)
        start_byte = (4 + 25 + 7) // 8
        if start_byte + 8 * dict_len > len(src):
            raise corrupt(f"pcodec dictionary of {dict_len} entries overruns the block")
        bit = 8 * (start_byte + 8 * dict_len)
    else:
        raise corrupt(f"pcodec mode {mode} not produced by metricsflow")
    byte = bit // 8
    if byte >= len(src):
        raise corrupt("pcodec metadata truncated")
    window = int.from_bytes(src[byte : byte + 2], "little") >> (bit % 8)
    delta = window & 0x0F
    if delta not in _ALLOWED_DELTAS:
        raise corrupt(f"pcodec delta encoding {delta} not produced by metricsflow")
