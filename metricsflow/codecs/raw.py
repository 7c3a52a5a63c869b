"""Raw chunks (tag 0): the uncompressed baseline and the reference layout.

``tag u8 | n uvarint | n x int64 LE timestamps_ms | n x float64 LE values``
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs._wire import Reader, check_increasing, corrupt, uvarint

TAG = 0
NAME = "raw"


class RawCodec:
    tag = TAG
    name = NAME

    def encode(self, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes:
        return b"".join(
            (
                bytes((TAG,)),
                uvarint(timestamps_ms.size),
                timestamps_ms.astype("<i8", copy=False).tobytes(),
                values.astype("<f8", copy=False).tobytes(),
            )
        )

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        reader = Reader(data, 1)
        n = reader.count()
        if len(data) - reader.pos != 16 * n:
            raise corrupt(f"raw block of {n} points needs {16 * n} bytes, has {len(data) - reader.pos}")
        timestamps = check_increasing(reader.array("<i8", n))
        values = reader.array("<f8", n)
        return timestamps, values
