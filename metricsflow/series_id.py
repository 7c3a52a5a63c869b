"""Series identity: canonical label bytes and the 64-bit series id.

Every producer, in every language, must compute the same id; ``proto/vectors/``
holds shared test vectors. The canonical form (format version 1):

    uvarint(len(tenant)) tenant
    for each label sorted by name (bytewise UTF-8):
        uvarint(len(name)) name uvarint(len(value)) value

Labels with an empty value are dropped first, as Prometheus treats them as absent.
series_id = XXH3-64 (seed 0) of those bytes; partition = series_id mod partitions.
"""

from __future__ import annotations

from collections.abc import Mapping

import xxhash

CANONICAL_FORMAT_VERSION = 1


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def uvarint(n: int) -> bytes:
    """Protobuf's unsigned varint (also the length prefix of the canonical form)."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def canonical_bytes(tenant: str, labels: Mapping[str, str]) -> bytes:
    """The canonical encoding of (tenant, labels) that the series id hashes."""
    parts = [uvarint(len(t := tenant.encode())), t]
    items = sorted((k.encode(), v.encode()) for k, v in labels.items() if v != "")
    for name, value in items:
        parts += [uvarint(len(name)), name, uvarint(len(value)), value]
    return b"".join(parts)


def series_id(tenant: str, labels: Mapping[str, str]) -> int:
    """Stable unsigned 64-bit id of a series."""
    return xxhash.xxh3_64_intdigest(canonical_bytes(tenant, labels))


def partition_for(sid: int, partitions: int) -> int:
    """The Kafka partition that owns a series."""
    return sid % partitions
