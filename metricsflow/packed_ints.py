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
from typing import NamedTuple

import numpy as np

from metricsflow.codecs._wire import Reader, corrupt, uvarint, wrap_i64, zigzag

_U64 = np.uint64
_U64_MASK = (1 << 64) - 1

_DELTAS = 0x80
_ZEROS_ELIDED = 0x40
WIDTH_MASK = 0x3F
_SMALL = 32  # up to this many fields, pack with Python ints rather than numpy
_SHIFTS = np.arange(63, -1, -1, dtype=np.uint64)  # MSB first: the last w are a w-bit field's
_GATHER_WIDTH = 57  # a field this wide starts within 7 bits of a byte: 8 bytes hold it
# Field positions by (fields, width), for columns of up to 1024 values (a 2 h block holds
# 120 1m windows): at most 256 x 16 KiB, whatever lengths corrupt blocks claim.
_CACHED_FIELDS = 1024
_CACHED_LAYOUTS = 256
_layouts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.uint64]] = {}


class Packing(NamedTuple):
    """A packed column whose size is known before its offsets are written: a caller
    comparing codings by size writes only the one it keeps (``to_bytes``). A tuple:
    a frozen dataclass cost ~1 µs per construction, ~10 per block."""

    head: bytes  # head byte, base, then seed or bitmap; the whole column if offsets is None
    offsets: np.ndarray | None
    width: int
    size: int

    def to_bytes(self) -> bytes:
        if self.offsets is None:
            return self.head
        return self.head + _write_offsets(self.offsets, self.width)


def plan(column: np.ndarray, deltas: bool) -> Packing | None:
    """``pack`` before the offsets are written, or None when offsets need 64 bits."""
    if column.size <= _SMALL:
        packed = pack_small(column.tolist(), deltas)
        return None if packed is None else Packing(packed, None, 0, len(packed))
    seed = b""
    if deltas:
        seed = uvarint(zigzag(int(column[0])))
        column = np.diff(column)  # wraps like the decoder's cumulative sum
    base, width, offsets = _offsets(column)
    if width > WIDTH_MASK:
        return None
    head = b"".join((bytes((width | (_DELTAS if deltas else 0),)), uvarint(zigzag(base)), seed))
    return Packing(head, offsets, width, len(head) + (width * column.size + 7) // 8)


def plan_rows(rows: np.ndarray, deltas: bool = False) -> list[Packing | None]:
    """``plan(row, deltas)`` of every row of a 2-D int64 array, the minimum and width of
    all rows in 4 numpy calls (7 residual columns of a block: 24 calls one by one)."""
    if rows.shape[1] <= _SMALL:
        return [plan(row, deltas) for row in rows]
    seeds: list[bytes] = [b""] * rows.shape[0]
    if deltas:
        seeds = [uvarint(zigzag(seed)) for seed in rows[:, 0].tolist()]
        rows = np.diff(rows, axis=1)  # wraps like the decoder's cumulative sum
    flag = _DELTAS if deltas else 0
    bases = rows.min(axis=1)
    offsets = rows.view(_U64) - bases.view(_U64)[:, None]
    plans: list[Packing | None] = []
    for base, top, row, seed in zip(bases.tolist(), offsets.max(axis=1).tolist(), offsets, seeds, strict=True):
        width = top.bit_length()
        if width > WIDTH_MASK:
            plans.append(None)
            continue
        head = b"".join((bytes((width | flag,)), uvarint(zigzag(base)), seed))
        plans.append(Packing(head, row if width else None, width, len(head) + (width * row.size + 7) // 8))
    return plans


def plan_rows_zeros_elided(rows: np.ndarray) -> list[Packing | None]:
    """``plan_zeros_elided(row)`` of every row of a 2-D int64 array, planned together."""
    nonzero = rows != 0
    bases = np.where(nonzero, rows, np.iinfo(np.int64).max).min(axis=1)
    bases[~nonzero.any(axis=1)] = 0
    offsets = np.where(nonzero, rows.view(_U64) - bases.view(_U64)[:, None], _U64(0))
    bitmaps = np.packbits(nonzero, axis=1)
    counts = np.count_nonzero(nonzero, axis=1).tolist()
    plans: list[Packing | None] = []
    for base, top, row, mask, bitmap, count in zip(bases.tolist(), offsets.max(axis=1).tolist(), offsets, nonzero,
                                                   bitmaps, counts, strict=True):
        width = top.bit_length()
        if width > WIDTH_MASK:
            plans.append(None)
            continue
        stored = row[mask] if width else None
        head = b"".join((bytes((width | _ZEROS_ELIDED,)), uvarint(zigzag(base)), bitmap.tobytes()))
        plans.append(Packing(head, stored, width, len(head) + (width * count + 7) // 8))
    return plans


def write_many(packings: list[Packing]) -> list[bytes]:
    """``[p.to_bytes() for p in packings]``, the offsets of packings of one width written by
    one numpy pass, shorter columns padded with zeros (bits past a column's last byte are cut
    off): per column, the calls cost more than the bits, and the zero-elided columns of a
    block each have a length of their own."""
    out = [p.head for p in packings]
    groups: dict[int, tuple[list[int], list[np.ndarray]]] = {}
    for i, p in enumerate(packings):
        if p.offsets is not None and p.width:
            members, offsets = groups.setdefault(p.width, ([], []))
            members.append(i)
            offsets.append(p.offsets)
    for width, (members, offsets) in groups.items():
        sizes = [o.size for o in offsets]
        longest = max(sizes)
        if min(sizes) == longest:
            rows = np.stack(offsets)
        else:
            rows = np.zeros((len(offsets), longest), dtype=_U64)
            for row, column in zip(rows, offsets, strict=True):
                row[:column.size] = column
        for i, body, size in zip(members, _write_rows(rows, width), sizes, strict=True):
            out[i] += body[:(size * width + 7) // 8].tobytes()
    return out


def plan_zeros_elided(column: np.ndarray) -> Packing | None:
    """``pack_zeros_elided`` before the offsets are written, or None when offsets need 64 bits."""
    nonzero = column != 0
    stored = column[nonzero]
    base, width, offsets = _offsets(stored)
    if width > WIDTH_MASK:
        return None
    head = b"".join((bytes((width | _ZEROS_ELIDED,)), uvarint(zigzag(base)), np.packbits(nonzero).tobytes()))
    return Packing(head, offsets, width, len(head) + (width * stored.size + 7) // 8)


def pack(column: np.ndarray, deltas: bool) -> bytes | None:
    """The packed column (differences if ``deltas``), or None when offsets need 64 bits."""
    packing = plan(column, deltas)
    return None if packing is None else packing.to_bytes()


def pack_zeros_elided(column: np.ndarray) -> bytes | None:
    """The column with its zeros elided, or None when offsets need 64 bits.

    The residuals of ``min`` and ``max`` are 0 in ~40 % of the windows (the extreme
    is an endpoint) and spread otherwise: one bit per window plus packed nonzero
    values is 0.115 B/raw point for min on the load workload, pcodec 0.146.
    """
    packing = plan_zeros_elided(column)
    return None if packing is None else packing.to_bytes()


def _offsets(column: np.ndarray) -> tuple[int, int, np.ndarray | None]:
    """Minimum, width of the offsets from it, and the offsets (None when all are 0)."""
    if column.size == 0:
        return 0, 0, None
    base = int(column.min())
    offsets = column.view(_U64) - np.uint64(base & _U64_MASK)
    width = int(offsets.max()).bit_length()
    return base, width, offsets if width else None


def _write_offsets(offsets: np.ndarray | None, width: int) -> bytes:
    if offsets is None or width == 0:
        return b""
    return _write_rows(offsets[None, :], width)[0].tobytes()


# The narrowest big-endian word a field of each width fits in: unpacking 64 bits per value
# for the 8-14-bit residuals of a rollup column was 4-8x the bits kept.
_WORDS = ([(np.dtype(">u1"), 8)] * 9 + [(np.dtype(">u2"), 16)] * 8 + [(np.dtype(">u4"), 32)] * 16
          + [(np.dtype(">u8"), 64)] * 32)


def _write_rows(offsets: np.ndarray, width: int) -> np.ndarray:
    """Each row's offsets packed MSB first, padded to a byte: each shifted to the top of the
    narrowest big-endian word it fits, the words unpacked to bits, the first ``width`` of
    each packed again (constant work per value, where shifting out each bit as a uint64
    cost 2x at 40 bits)."""
    rows, count = offsets.shape
    word, bits_per_word = _WORDS[width]
    words = (offsets << _U64(bits_per_word - width)).astype(word)
    bits = np.unpackbits(words.view(np.uint8), axis=1).reshape(rows, count, bits_per_word)[:, :, :width]
    return np.packbits(bits.reshape(rows, count * width), axis=1)


def zigzag_varint(value: int) -> bytes:
    """``uvarint(zigzag(value))`` of an int64 without the range check a zigzag needs not;
    one-byte varints (most residuals of a short block) from a table."""
    value = ((value << 1) ^ (value >> 63)) & _U64_MASK
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((x,)) for x in range(0x80)]


def bit_lengths(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of every uint64 of ``values`` (int64 result): each 32-bit half
    converts to float64 exactly, and ``frexp``'s exponent is its bit length."""
    high = np.frexp((values >> _U64(32)).astype(np.float64))[1]
    low = np.frexp((values & _U64(0xFFFFFFFF)).astype(np.float64))[1]
    return np.where(high > 0, high + 32, low).astype(np.int64)


def zigzags(values: np.ndarray) -> np.ndarray:
    """``zigzag`` of every int64 of ``values``, as uint64."""
    return ((values << 1) ^ (values >> 63)).view(_U64)


def varint_sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of ``uvarint`` of every uint64 of ``values``."""
    return (np.maximum(bit_lengths(values), 1) + 6) // 7


def zigzag_varint_rows(rows: np.ndarray) -> list[bytes]:
    """``b"".join(zigzag_varint(x) for x in row)`` of every row of a 2-D int64 array, all
    rows written by one numpy pass per varint byte (one at a time, a short block's 7
    columns cost ~40 varint calls)."""
    if not rows.size:
        return [b""] * rows.shape[0]
    values = zigzags(rows).ravel()
    sizes = varint_sizes(values)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    at = np.arange(values.size)
    for k in range(int(sizes.max())):
        if k:
            at = at[sizes[at] > k]
        group = (values[at] >> _U64(7 * k)) & _U64(0x7F)
        out[starts[at] + k] = group | (sizes[at] > k + 1).astype(np.uint64) << _U64(7)
    data = out.tobytes()
    bounds = [0, *ends.reshape(rows.shape)[:, -1].tolist()]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


class RowsPacking:
    """``pack`` of every row of a 2-D int64 array (row i as differences after a seed where
    ``deltas[i]``), sized for all rows by a few numpy calls before any is written: a caller
    comparing codings row by row writes only the rows it keeps (``write``). For short rows,
    where ``pack_small`` per row cost more than the bits."""

    def __init__(self, rows: np.ndarray, deltas: np.ndarray) -> None:
        n = rows.shape[1]
        fields = rows
        if deltas.any():
            # A row of differences is one shorter: its last one repeated keeps its minimum and widest offset.
            fields = rows.copy()
            if n > 1:
                diffs = np.diff(rows[deltas], axis=1)  # wraps like the decoder's cumulative sum
                fields[deltas] = np.concatenate([diffs, diffs[:, -1:]], axis=1)
            else:
                fields[deltas] = 0  # no differences: base 0, width 0
        self._rows, self._deltas = rows, deltas
        self._bases = fields.min(axis=1)
        self._offsets = fields.view(_U64) - self._bases.view(_U64)[:, None]
        self._widths = bit_lengths(self._offsets.max(axis=1))
        head = 1 + varint_sizes(zigzags(self._bases)) + np.where(deltas, varint_sizes(zigzags(rows[:, 0])), 0)
        body = (self._widths * (n - deltas) + 7) // 8
        # Bytes of each row's packing; -1 where the offsets need 64 bits (``pack`` gives None).
        self.sizes = np.where(self._widths <= WIDTH_MASK, head + body, -1)

    def write(self, members: list[int]) -> list[bytes]:
        """``pack(rows[i], deltas[i])`` of each row i of ``members`` (none of which is -1 in ``sizes``)."""
        n = self._rows.shape[1]
        packings: list[Packing] = []
        for i, base, width, deltas, seed, size in zip(
            members, self._bases[members].tolist(), self._widths[members].tolist(),
            self._deltas[members].tolist(), self._rows[members, 0].tolist(), self.sizes[members].tolist(),
            strict=True,
        ):
            head = bytes((width | (_DELTAS if deltas else 0),)) + zigzag_varint(base)
            if deltas:
                head += zigzag_varint(seed)
            offsets = self._offsets[i, :n - 1 if deltas else n] if width else None
            packings.append(Packing(head, offsets, width, size))
        return write_many(packings)


def pack_small(column: list[int], deltas: bool) -> bytes | None:
    """``pack`` of a few values with Python ints: the same bytes in a tenth of the µs."""
    parts = []
    if deltas:
        parts.append(zigzag_varint(column[0]))
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
    return b"".join((head, zigzag_varint(base), *parts, body))


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
        nonzero = np.unpackbits(np.frombuffer(reader.take((n + 7) // 8), dtype=np.uint8))[:n].view(bool)
        m = int(np.count_nonzero(nonzero))
    if not width:
        values = np.full(m, wrap_i64(base), dtype=np.int64)
    else:
        data = reader.take((width * m + 7) // 8)
        if m <= _SMALL:
            acc = int.from_bytes(data, "big") >> (-width * m % 8)
            mask = (1 << width) - 1
            offsets = np.array([(acc >> (width * (m - 1 - i))) & mask for i in range(m)], dtype=_U64)
        elif width <= _GATHER_WIDTH:
            offsets = _read_fields(data, m, width)
        else:
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: width * m].reshape(m, width)
            offsets = (bits.astype(_U64) << _SHIFTS[64 - width :]).sum(axis=1, dtype=_U64)
        offsets += np.uint64(base & _U64_MASK)  # wraps mod 2^64
        values = offsets.view(np.int64)
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


def _read_fields(data: bytes, m: int, width: int) -> np.ndarray:
    """m fields of ``width`` <= 57 bits: each one is read as the big-endian 64-bit word
    at its first byte (a view with a 1-byte stride over the padded data), shifted and
    masked; unpacking every bit into a byte took 3x the time on a 120-value column."""
    layout = _layouts.get((m, width))
    if layout is None:
        bit = np.arange(m, dtype=np.int64) * width
        layout = (bit >> 3, (64 - width - (bit & 7)).astype(_U64), np.uint64((1 << width) - 1))
        if m <= _CACHED_FIELDS and len(_layouts) < _CACHED_LAYOUTS:  # block lengths x widths seen
            _layouts[(m, width)] = layout
    first_bytes, shifts, mask = layout
    padded = data + bytes(8)
    words = np.ndarray((len(padded) - 7,), dtype=">u8", buffer=padded, strides=(1,))
    fields = words.take(first_bytes).astype(_U64)
    fields >>= shifts
    fields &= mask
    return fields
