"""Byte format of a pushdown partial: labelled numpy arrays behind a JSON header.

Layout (little-endian)::

    b"MFP" version(u8=1) | u32 header length | header (JSON) | array bytes, in header order

The header is ``{"parts": [part, ...], "arrays": [[dtype, shape], ...]}``; each part is a
JSON object naming its arrays by index into ``arrays``. Arrays travel as raw bytes, so
NaN payloads (stale markers) survive. Label sets are lists of ``[name, value]`` pairs.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from .errors import PromQLExecutionError
from .labels import Labels

MAGIC = b"MFP\x01"
_U32 = struct.Struct("<I")
_DTYPES = {"f8": "<f8", "i8": "<i8", "b1": "|b1"}


class PartialWriter:
    """Collects parts and arrays; ``add_array`` returns the index a part refers to."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self._specs: list[list[Any]] = []
        self._blobs: list[bytes] = []

    def add_array(self, arr: np.ndarray, kind: str) -> int:
        a = np.ascontiguousarray(arr, dtype=_DTYPES[kind])
        self._specs.append([kind, list(a.shape)])
        self._blobs.append(a.tobytes())
        return len(self._specs) - 1

    def array(self, index: int) -> np.ndarray:
        """An array added before, as it will travel."""
        return np.frombuffer(self._blobs[index], dtype=_DTYPES[self._specs[index][0]]).reshape(self._specs[index][1])

    def to_bytes(self) -> bytes:
        header = orjson.dumps({"parts": self.parts, "arrays": self._specs})
        return b"".join((MAGIC, _U32.pack(len(header)), header, *self._blobs))


class PartialReader:
    """The parts and arrays of one encoded partial (arrays are read-only views)."""

    def __init__(self, data: bytes) -> None:
        try:
            if data[:4] != MAGIC:
                raise ValueError(f"bad magic {data[:4]!r}")
            (hlen,) = _U32.unpack_from(data, 4)
            doc = orjson.loads(data[8 : 8 + hlen])
            self.parts: list[dict[str, Any]] = doc["parts"]
            pos = 8 + hlen
            self._arrays: list[np.ndarray] = []
            for kind, shape in doc["arrays"]:
                dt = np.dtype(_DTYPES[kind])
                count = int(np.prod(shape, dtype=np.int64))
                arr = np.frombuffer(data, dtype=dt, count=count, offset=pos).reshape(shape)
                pos += count * dt.itemsize
                self._arrays.append(arr)
            if pos != len(data):
                raise ValueError(f"{len(data) - pos} trailing bytes")
        except (struct.error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise PromQLExecutionError(f"cannot read query partial of {len(data)} bytes: {exc}") from None

    def array(self, index: int) -> np.ndarray:
        return self._arrays[index]


def labels_out(labels: list[Labels]) -> list[list[list[str]]]:
    return [[list(p) for p in lb] for lb in labels]


def labels_in(raw: list[list[list[str]]]) -> list[Labels]:
    return [tuple((str(k), str(v)) for k, v in lb) for lb in raw]
