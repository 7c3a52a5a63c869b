"""Hand-written protobuf encoding of the native WriteRequest for senders on a hot path.

The bytes are exactly what the generated classes would produce for the same
message (a test checks it), but label sets are encoded once per series and
reused, and sample columns are copied in as little-endian bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from metricsflow.series_id import uvarint

_TAGS = [bytes((tag,)) for tag in range(128)]  # one-byte field keys: fields 1-15 of any wire type


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its one-byte key ``tag``, the payload's length, the payload."""
    return _TAGS[tag] + uvarint(len(payload)) + payload


def encode_label(name: str, value: str) -> bytes:
    """A ``Label`` message's bytes (name field 1, value field 2), empty strings omitted as protobuf omits them."""
    return (field(0x0A, name.encode()) if name else b"") + (field(0x12, value.encode()) if value else b"")


def encode_labels(labels: Mapping[str, str]) -> bytes:
    """Series.labels (field 1), sorted by name, ready to prefix a Series message."""
    return b"".join([field(0x0A, encode_label(name, value)) for name, value in sorted(labels.items())])


def encode_series(label_bytes: bytes, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes:
    """One Series with little-endian columns (fields 4 and 5)."""
    return (label_bytes + field(0x22, timestamps_ms.astype("<i8", copy=False).tobytes())
            + field(0x2A, values.astype("<f8", copy=False).tobytes()))


def encode_write_request(series: Sequence[bytes]) -> bytes:
    """WriteRequest from already encoded Series messages (field 1)."""
    return b"".join(field(0x0A, s) for s in series)
