"""Vectorised MSB-first bit packing for the Gorilla codec.

A stream is a sequence of fields (value, width <= 64 bits) written back to back,
most significant bit first, zero-padded to a whole byte. Packing works on 64-bit
words: every field lands in at most two words, and fields never overlap, so the
per-word OR of all contributions is the word. numpy defines shifts by >= 64 as 0,
which the code relies on for the "no spill into the next word" case.
"""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_SIXTY_FOUR = np.uint64(64)


def _or_segments(words: np.ndarray, idx: np.ndarray, parts: np.ndarray) -> None:
    """words[idx[i]] |= parts[i] for a non-decreasing ``idx`` (one reduceat, no ufunc.at)."""
    starts = np.flatnonzero(np.diff(idx)) + 1
    seg = np.concatenate((np.zeros(1, dtype=np.int64), starts))
    words[idx[seg]] |= np.bitwise_or.reduceat(parts, seg)


def pack(values: np.ndarray, widths: np.ndarray) -> bytes:
    """Concatenate the low ``widths[i]`` bits of ``values[i]`` (uint64) into bytes."""
    widths = widths.astype(np.int64, copy=False)
    keep = widths > 0
    values, widths = values[keep], widths[keep]
    if widths.size == 0:
        return b""
    ends = np.cumsum(widths)
    starts = ends - widths
    total_bits = int(ends[-1])
    words = np.zeros((total_bits + 63) // 64 + 1, dtype=_U64)
    # Left-align each field in a word, then split it at the word boundary.
    aligned = values.astype(_U64, copy=False) << (_SIXTY_FOUR - widths.astype(_U64))
    word_idx = starts >> 6
    offset = (starts & 63).astype(_U64)
    _or_segments(words, word_idx, aligned >> offset)
    _or_segments(words, word_idx + 1, aligned << (_SIXTY_FOUR - offset))
    return words.astype(">u8").tobytes()[: (total_bits + 7) // 8]


class BitView:
    """Random-access reads of up to 64 bits at arbitrary bit offsets, vectorised."""

    __slots__ = ("n_bits", "words")

    def __init__(self, data: bytes) -> None:
        self.n_bits = len(data) * 8
        # Two words of zero padding so reads near the end never index out of range.
        padded = bytes(data) + b"\x00" * (16 + (-len(data)) % 8)
        self.words = np.frombuffer(padded, dtype=">u8").astype(_U64)

    def read(self, pos: np.ndarray, width: np.ndarray | int) -> np.ndarray:
        """Fields of ``width`` (1..64) bits starting at bit offsets ``pos`` (in range)."""
        pos = np.asarray(pos, dtype=np.int64)
        idx = pos >> 6
        offset = (pos & 63).astype(_U64)
        window = (self.words[idx] << offset) | (self.words[idx + 1] >> (_SIXTY_FOUR - offset))
        fields: np.ndarray = window >> (_SIXTY_FOUR - np.asarray(width).astype(_U64))
        return fields


def small_fields(data: bytes, width: int) -> np.ndarray:
    """The ``width``-bit (<= 8) field starting at every bit position, as uint8 per position.

    Built from unpacked bits with shifted adds on uint8 arrays: ~10x cheaper than
    ``BitView.read`` at every position, which is what the decode loops need.
    """
    n_bits = len(data) * 8
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate((bits, np.zeros(width, dtype=np.uint8)))
    out = np.zeros(n_bits, dtype=np.uint8)
    for j in range(width):
        out <<= 1
        out |= bits[j : j + n_bits]
    return out
