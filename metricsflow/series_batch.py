"""mf.series records: one series per record (8-byte key) or one batch per partition and request (16-byte key).

A burst of new series used to cost the worker Faust's per-record path once per
series (~1,300 series/s, and no point of the partition consumed meanwhile);
collectors now announce the new series of one request and partition in one
SeriesBatch. Single records stay readable: other producers and older collectors
write them, and the worker's series table holds both.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xxhash

from metricsflow.errors import InvalidInput
from metricsflow.ingest.label_sets import read_labels
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.proto_views import views
from metricsflow.series_id import uvarint
from metricsflow.wire import encode_label, field

FORMAT_VERSION = 1
SINGLE_KEY_LEN = 8
BATCH_KEY_LEN = 16
# A record stays well under Kafka's default 1 MB message limit (mf.series and the series table's
# changelog keep it): a bounded count, and a bounded size for series with long labels (one series
# is at most 30 labels of 256 + 4,096 bytes, about 130 KB).
MAX_SERIES_PER_BATCH = 2000
MAX_BATCH_BYTES = 512 * 1024


# A label's field in a SeriesInfo, by (name, value): the hosts of a fleet share most of their labels.
# Emptied when full, like the collector's label sets.
LABEL_FIELDS_KEPT = 65_536
_label_fields: dict[tuple[str, str], bytes] = {}
_U64 = 1 << 64


def _label_field(label: tuple[str, str]) -> bytes:
    name, value = label
    encoded = field(0x12, encode_label(name, value)) if value else b""  # SeriesInfo.labels; empty: left out
    if len(_label_fields) >= LABEL_FIELDS_KEPT:
        _label_fields.clear()
    _label_fields[label] = encoded
    return encoded


def encode_info(tenant: str, labels: Mapping[str, str], kind: int, first_seen_ms: int) -> bytes:
    """A SeriesInfo's bytes, exactly what ``SerializeToString`` writes for it (a test checks): labels
    in name order, empty values left out. Built as an object, label by label, one took 7.4 µs for the
    11 labels of the load workload, 3.1 µs like this (perf/RESULTS.md, "The transport's floor")."""
    parts = [field(0x0A, tenant.encode())] if tenant else []
    encoded = _label_fields.get
    parts += [encoded(label) or _label_field(label) for label in sorted(labels.items())]
    parts.append(_kind_and_first_seen(kind, first_seen_ms))
    return b"".join(parts)


@functools.lru_cache(maxsize=16)
def _kind_and_first_seen(kind: int, first_seen_ms: int) -> bytes:
    """Fields 3 and 4 (zeros left out): the same for every new series of a write (one clock reading)."""
    return (b"\x18" + uvarint(kind % _U64) if kind else b"") + (
        b"\x20" + uvarint(first_seen_ms % _U64) if first_seen_ms else b"")


def single_key(sid: int) -> bytes:
    return sid.to_bytes(SINGLE_KEY_LEN, "big")


def batch_key(sids: np.ndarray) -> bytes:
    """xxh3-128 of the sorted ids: a repeated announcement of the same set replaces the earlier one on compaction."""
    return xxhash.xxh3_128_digest(np.sort(sids.astype("<u8")).tobytes())


def encode_batches(sids: Sequence[int], infos: Sequence[pb.SeriesInfo | bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records in the given order, each of at most MAX_SERIES_PER_BATCH series and, unless
    one series alone is larger, MAX_BATCH_BYTES of series. ``infos`` are SeriesInfo messages or their
    bytes (``encode_info``); the records are the same bytes either way."""
    encoded = [info if type(info) is bytes else info.SerializeToString() for info in infos]
    start, size = 0, 0
    for i, info in enumerate(encoded):
        n = len(info)
        if i > start and (i - start >= MAX_SERIES_PER_BATCH or size + n > MAX_BATCH_BYTES):
            yield _encode(sids[start:i], encoded[start:i])
            start, size = i, 0
        size += n
    if start < len(encoded):
        yield _encode(sids[start:], encoded[start:])


_FORMAT_VERSION_FIELD = b"\x08" + uvarint(FORMAT_VERSION)


def _encode(sids: Sequence[int], infos: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The SeriesBatch's bytes as ``SerializeToString`` writes them: version, ids, then each SeriesInfo."""
    ids = np.array(sids, dtype="<u8")
    value = b"".join((_FORMAT_VERSION_FIELD, field(0x12, ids.tobytes()), *[field(0x1A, info) for info in infos]))
    return batch_key(ids), value


def decode(key: bytes, value: bytes) -> list[tuple[int, pb.SeriesInfo]]:
    """The (series id, SeriesInfo) pairs of one mf.series record or series-table entry.

    Raises InvalidInput (with the reason counted by the worker) for a key of another
    length, an unparsable value or a batch whose ids and entries disagree.
    """
    return list(zip(*_entries(key, value, pb.SeriesInfo, pb.SeriesBatch), strict=True))


def decode_series(key: bytes, value: bytes) -> list[tuple[int, str, dict[str, str], int]]:
    """``decode`` as (series id, tenant, labels, kind): what the worker's index takes.

    Each label is read from its bytes once per process, not once per series (``label_sets``):
    a fleet's series share most labels, and reading them from the messages took 6.5-18 µs
    of a new series' ~20-30 µs in the worker. Raises InvalidInput as ``decode`` does."""
    ids, infos = _entries(key, value, _SeriesInfoView, _SeriesBatchView)
    out = []
    for sid, info in zip(ids, infos, strict=True):
        read = read_labels(info.labels)
        if read is None:
            raise InvalidInput("bad_series_info", "unparsable mf.series value: a label is not valid UTF-8")
        out.append((sid, info.tenant, {name: value for name, value, _ in read}, info.kind))
    return out


def _entries(key: bytes, value: bytes, info_class: Any, batch_class: Any) -> tuple[list[int], Sequence[Any]]:
    """The series ids and SeriesInfo messages (``info_class``) of a record; InvalidInput if it is none."""
    try:
        if len(key) == SINGLE_KEY_LEN:
            return [int.from_bytes(key, "big")], [info_class.FromString(value)]
        if len(key) != BATCH_KEY_LEN:
            raise InvalidInput("bad_series_key", f"mf.series key of {len(key)} bytes (8 or 16 expected)")
        batch = batch_class.FromString(value)
    except InvalidInput:
        raise
    except Exception as exc:  # protobuf's DecodeError and friends: a foreign producer's garbage
        raise InvalidInput("bad_series_info", f"unparsable mf.series value: {exc}") from exc
    if batch.format_version != FORMAT_VERSION:
        raise InvalidInput("bad_series_info", f"unknown SeriesBatch format_version {batch.format_version}")
    if len(batch.series_ids) != 8 * len(batch.series):
        raise InvalidInput("bad_series_info", f"SeriesBatch with {len(batch.series_ids)} id bytes"
                                              f" for {len(batch.series)} series")
    return np.frombuffer(batch.series_ids, dtype="<u8").tolist(), batch.series


# SeriesInfo and SeriesBatch with each label as its raw bytes (field numbers and types as
# proto/metricsflow.proto, the kind as the integer it is on the wire).
_SeriesInfoView, _SeriesBatchView = views("metricsflow.series_batch", {
    "SeriesInfoView": "string tenant = 1; repeated bytes labels = 2; int32 kind = 3; int64 first_seen_ms = 4",
    "SeriesBatchView": "uint32 format_version = 1; bytes series_ids = 2; repeated SeriesInfoView series = 3",
}, "SeriesInfoView", "SeriesBatchView")
