"""Raw decimal blocks (tag 5): raw timestamps, values as decimal mantissas; segments write them.

``tag u8 | n uvarint | (n > 0:) n x int64 LE timestamps_ms | decimals u8 | width u8 |
n x int(8 * width) LE mantissas``, each value ``float64(mantissa) / float64(10^decimals)``.

The timestamps sit where the raw layout (tag 0) has them, so a segment's newest timestamp is
read the same way from either. There are no exceptions: a span with a value that is not such a
decimal is written raw. Not a chunk codec one picks (it cannot hold every column); the cut
writes it (``tables/segments.py``) and ``codecs.decode`` reads it.
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs._wire import Reader, check_increasing, corrupt, uvarint
from metricsflow.codecs.decimal_codec import MAX_SCALE

TAG = 5
NAME = "raw_decimal"
WIDTHS = {1: np.dtype("<i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}


def mantissa_values(mantissas: np.ndarray, decimals: int) -> np.ndarray:
    """``float64(mantissa) / float64(10^decimals)``: the value a decimal mantissa stands for, here and in
    PointBatch format 2, and what an encoder checks a value against before it keeps it as a mantissa."""
    values = mantissas.astype(np.float64)
    values /= float(10**decimals)
    return values


def encode(timestamps_ms: np.ndarray, mantissas: np.ndarray, decimals: int) -> bytes:
    """One block of ``mantissas / 10^decimals`` (the reference the cut's encoder matches)."""
    width = mantissas.dtype.itemsize
    if width not in WIDTHS or mantissas.dtype.kind != "i" or not 0 <= decimals <= MAX_SCALE:
        raise ValueError(f"mantissas {mantissas.dtype} at {decimals} decimals: signed 1, 2, 4 or 8 bytes, "
                         f"0..{MAX_SCALE} decimals")
    n = timestamps_ms.size
    if not n:
        return bytes((TAG, 0))
    return b"".join((bytes((TAG,)), uvarint(n), timestamps_ms.astype("<i8", copy=False).tobytes(),
                     bytes((decimals, width)), mantissas.astype(WIDTHS[width], copy=False).tobytes()))


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    reader = Reader(data, 1)
    n = reader.count()
    if not n:
        reader.finish()
        return np.empty(0, np.int64), np.empty(0, np.float64)
    timestamps = check_increasing(reader.array("<i8", n))
    decimals, width = reader.byte(), reader.byte()
    if width not in WIDTHS or decimals > MAX_SCALE:
        raise corrupt(f"raw decimal block: width {width} (1, 2, 4 or 8), decimals {decimals} (at most {MAX_SCALE})")
    if len(data) - reader.pos != width * n:
        raise corrupt(f"raw decimal block of {n} points needs {width * n} mantissa bytes, has {len(data) - reader.pos}")
    return timestamps, mantissa_values(np.frombuffer(data, WIDTHS[width], n, reader.pos), decimals)


class RawDecimalCodec:
    """The decoder ``codecs.decode`` dispatches tag 5 to."""

    tag = TAG
    name = NAME

    def encode(self, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes:
        raise NotImplementedError("raw decimal blocks are written by tables/segments.py from a cut's mantissas")

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        return decode(data)
