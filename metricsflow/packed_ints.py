"""Packed integer columns (frame of reference), a coding of the rollup block format.

``head u8 | base varint | [seed varint] | [nonzero bitmap] | w-bit offsets``: head
bits 0-5 the width w (0..63), bit 6 zeros elided (a bitmap, MSB first, marks the
nonzero values; only those are stored), bit 7 first-order differences after a seed.
Offsets from the minimum are packed MSB-first, zero-padded to a byte. For the
~120-value Gaussian-like residuals of a 1m rollup block this sits ~0.3 bits per
value over their entropy, where pcodec's metadata costs ~1.5. All arithmetic wraps
mod 2^64, so any int64 column round-trips. Layout: docs/format/chunks.md,
"Rollup blocks".
"""

from __future__ import annotations

import itertools

import numpy as np

from metricsflow.codecs._wire import Reader, corrupt, uvarint, wrap_i64, zigzag

_U64 = np.uint64
_U64_MASK = (1 << 64) - 1

_DELTAS = 0x80
_ZEROS_ELIDED = 0x40
WIDTH_MASK = 0x3F
_SMALL = 32  # up to this many fields, pack with Python ints rather than numpy
_SHIFTS = np.arange(63, -1, -1, dtype=np.uint64)  # MSB first: the last w are a w-bit field's
_ONE = np.uint64(1)


def pack(column: np.ndarray, deltas: bool) -> bytes | None:
    """The packed column (differences if ``deltas``), or None when offsets need 64 bits."""
    if column.size <= _SMALL:
        return pack_small(column.tolist(), deltas)
    parts = []
    if deltas:
        parts.append(uvarint(zigzag(int(column[0]))))
        column = np.diff(column)  # wraps like the decoder's cumulative sum
    base, width, body = _pack_offsets(column)
    if width > WIDTH_MASK:
        return None
    head = bytes((width | (_DELTAS if deltas else 0),))
    return b"".join((head, uvarint(zigzag(base)), *parts, body))


def pack_zeros_elided(column: np.ndarray) -> bytes | None:
    """The column with its zeros elided, or None when offsets need 64 bits.

    The residuals of ``min`` and ``max`` are 0 in ~40 % of the windows (the extreme
    is an endpoint) and spread otherwise: one bit per window plus packed nonzero
    values is 0.115 B/raw point for min on the load workload, pcodec 0.146.
    """
    nonzero = column != 0
    base, width, body = _pack_offsets(column[nonzero])
    if width > WIDTH_MASK:
        return None
    bitmap = np.packbits(nonzero).tobytes()
    return b"".join((bytes((width | _ZEROS_ELIDED,)), uvarint(zigzag(base)), bitmap, body))


def _pack_offsets(column: np.ndarray) -> tuple[int, int, bytes]:
    """Minimum, width and packed offsets from it (one bit per byte, then packbits:
    5 numpy calls where ``codecs._bits.pack`` needs ~20)."""
    if column.size == 0:
        return 0, 0, b""
    base = int(column.min())
    offsets = column.view(_U64) - np.uint64(base & _U64_MASK)
    width = int(offsets.max()).bit_length()
    if width == 0 or width > WIDTH_MASK:
        return base, width, b""
    bits = ((offsets[:, None] >> _SHIFTS[64 - width :]) & _ONE).astype(np.uint8)
    return base, width, np.packbits(bits.ravel()).tobytes()


def pack_small(column: list[int], deltas: bool) -> bytes | None:
    """``pack`` of a few values with Python ints: the same bytes in a tenth of the µs."""
    parts = []
    if deltas:
        parts.append(uvarint(zigzag(column[0])))
        column = [wrap_i64(b - a) for a, b in itertools.pairwise(column)]
    base = min(column) if column else 0
    acc = width = 0
    if column:
        offsets = [x - base for x in column]  # < 2^64: what the uint64 subtraction gives
        width = max(offsets).bit_length()
        if width > WIDTH_MASK:
            return None
        for offset in offsets:
            acc = (acc << width) | offset
    total = width * len(column)
    pad = -total % 8
    body = (acc << pad).to_bytes((total + pad) // 8, "big")
    head = bytes((width | (_DELTAS if deltas else 0),))
    return b"".join((head, uvarint(zigzag(base)), *parts, body))


def unpack(reader: Reader, n: int) -> np.ndarray:
    """Read a packed column of ``n`` values; corrupt_chunk on bad input."""
    head = reader.byte()
    width = head & WIDTH_MASK
    deltas = bool(head & _DELTAS)
    elided = bool(head & _ZEROS_ELIDED)
    if deltas and elided:
        raise corrupt(f"packed column head {head:#04x}")
    base = reader.varint()
    seed = reader.varint() if deltas else 0
    nonzero = None
    m = n - 1 if deltas else n
    if elided:
        nonzero = np.unpackbits(np.frombuffer(reader.take((n + 7) // 8), dtype=np.uint8))[:n].astype(bool)
        m = int(np.count_nonzero(nonzero))
    offsets = np.zeros(m, dtype=_U64)
    if width:
        data = reader.take((width * m + 7) // 8)
        if m <= _SMALL:
            acc = int.from_bytes(data, "big") >> (-width * m % 8)
            mask = (1 << width) - 1
            offsets = np.array([(acc >> (width * (m - 1 - i))) & mask for i in range(m)], dtype=_U64)
        else:
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: width * m].reshape(m, width)
            offsets = (bits.astype(_U64) << _SHIFTS[64 - width :]).sum(axis=1, dtype=_U64)
    values = (offsets + np.uint64(base & _U64_MASK)).view(np.int64)
    if nonzero is not None:
        column = np.zeros(n, dtype=np.int64)
        column[nonzero] = values
        return column
    if not deltas:
        return values
    restored = np.empty(n, dtype=np.int64)
    restored[0] = wrap_i64(seed)
    restored[1:] = values
    return np.cumsum(restored, out=restored)  # wraps mod 2^64 like np.diff
