"""Byte-level helpers shared by the codecs: varints and a bounds-checked reader.

Every read is checked against the buffer length so a truncated or corrupt block
raises ``InvalidInput("corrupt_chunk", ...)`` instead of an IndexError or a huge
allocation.
"""

from __future__ import annotations

import numpy as np

from metricsflow.errors import InvalidInput

# Decoders allocate ``n`` points up front; pcodec can describe a million zeros in a
# dozen bytes, so the length cannot be checked against the input size. 2^21 points
# (32 MiB of columns) is ~3000x the largest chunk we cut (720 points).
MAX_POINTS = 1 << 21

_U64_MASK = (1 << 64) - 1


def corrupt(detail: str) -> InvalidInput:
    return InvalidInput("corrupt_chunk", detail)


def uvarint(value: int) -> bytes:
    """LEB128 unsigned varint of a value in [0, 2^64)."""
    if not 0 <= value <= _U64_MASK:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    """Map a signed 64-bit int to unsigned so small magnitudes get short varints."""
    return ((value << 1) ^ (value >> 63)) & _U64_MASK


def unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def wrap_i64(value: int) -> int:
    """Two's-complement wrap of a Python int into int64 range."""
    value &= _U64_MASK
    return value - (1 << 64) if value >> 63 else value


class Reader:
    """Sequential reader over one block; every method raises corrupt_chunk on overrun."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise corrupt(f"truncated at byte {self.pos}")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uvarint(self) -> int:
        buf, pos = self.buf, self.pos
        result = 0
        for shift in range(0, 70, 7):
            if pos >= len(buf):
                raise corrupt(f"truncated varint at byte {pos}")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if result > _U64_MASK:
                    raise corrupt(f"varint overflows 64 bits at byte {pos}")
                self.pos = pos
                return result
        raise corrupt(f"varint longer than 10 bytes at byte {pos}")

    def varint(self) -> int:
        return unzigzag(self.uvarint())

    def count(self) -> int:
        n = self.uvarint()
        if n > MAX_POINTS:
            raise corrupt(f"point count {n} exceeds limit {MAX_POINTS}")
        return n

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.buf):
            raise corrupt(f"need {size} bytes at {self.pos}, have {len(self.buf) - self.pos}")
        chunk = self.buf[self.pos : end]
        self.pos = end
        return chunk

    def array(self, dtype: str, n: int) -> np.ndarray:
        """``n`` little-endian items of ``dtype`` ('<i8', '<f8', '<u8') as a native array."""
        raw = self.take(8 * n)
        return np.frombuffer(raw, dtype=dtype).astype(dtype[1:], copy=True)

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise corrupt(f"{len(self.buf) - self.pos} trailing bytes after block")


def byte_runs(buffer: bytes | memoryview | np.ndarray, n: int) -> np.ndarray:
    """Every n bytes of ``buffer``, one item per starting byte (a view): a gather of items copies whole runs
    of bytes, not one element at a time (a column of a request, a run of points)."""
    size = memoryview(buffer).nbytes
    return np.ndarray(buffer=buffer, dtype=np.dtype((np.void, n)), shape=(size - n + 1,), strides=(1,))


def check_increasing(timestamps_ms: np.ndarray) -> np.ndarray:
    """Decoders return what encoders accept: strictly increasing timestamps, or corrupt_chunk."""
    if timestamps_ms.size > 1 and not np.all(timestamps_ms[1:] > timestamps_ms[:-1]):
        raise corrupt("decoded timestamps are not strictly increasing")
    return timestamps_ms
