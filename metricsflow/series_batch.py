"""mf.series records: one series per record (8-byte key) or one batch per partition and request (16-byte key).

A burst of new series used to cost the worker Faust's per-record path once per
series (~1,300 series/s, and no point of the partition consumed meanwhile);
collectors now announce the new series of one request and partition in one
SeriesBatch. Single records stay readable: other producers and older collectors
write them, and the worker's series table holds both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import xxhash

from metricsflow.errors import InvalidInput
from metricsflow.pb import metricsflow_pb2 as pb

FORMAT_VERSION = 1
SINGLE_KEY_LEN = 8
BATCH_KEY_LEN = 16
# A record stays well under Kafka's default 1 MB message limit (mf.series and the series table's
# changelog keep it): a bounded count, and a bounded size for series with long labels (one series
# is at most 30 labels of 256 + 4,096 bytes, about 130 KB).
MAX_SERIES_PER_BATCH = 2000
MAX_BATCH_BYTES = 512 * 1024


def single_key(sid: int) -> bytes:
    return sid.to_bytes(SINGLE_KEY_LEN, "big")


def batch_key(sids: np.ndarray) -> bytes:
    """xxh3-128 of the sorted ids: a repeated announcement of the same set replaces the earlier one on compaction."""
    return xxhash.xxh3_128_digest(np.sort(sids.astype("<u8")).tobytes())


def encode_batches(sids: Sequence[int], infos: Sequence[pb.SeriesInfo]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records in the given order, each of at most MAX_SERIES_PER_BATCH series and, unless
    one series alone is larger, MAX_BATCH_BYTES of series."""
    start, size = 0, 0
    for i, info in enumerate(infos):
        n = info.ByteSize()
        if i > start and (i - start >= MAX_SERIES_PER_BATCH or size + n > MAX_BATCH_BYTES):
            yield _encode(sids[start:i], infos[start:i])
            start, size = i, 0
        size += n
    if start < len(infos):
        yield _encode(sids[start:], infos[start:])


def _encode(sids: Sequence[int], infos: Sequence[pb.SeriesInfo]) -> tuple[bytes, bytes]:
    ids = np.array(sids, dtype="<u8")
    value = pb.SeriesBatch(format_version=FORMAT_VERSION, series_ids=ids.tobytes(), series=infos)
    return batch_key(ids), value.SerializeToString()


def decode(key: bytes, value: bytes) -> list[tuple[int, pb.SeriesInfo]]:
    """The (series id, SeriesInfo) pairs of one mf.series record or series-table entry.

    Raises InvalidInput (with the reason counted by the worker) for a key of another
    length, an unparsable value or a batch whose ids and entries disagree.
    """
    try:
        if len(key) == SINGLE_KEY_LEN:
            return [(int.from_bytes(key, "big"), pb.SeriesInfo.FromString(value))]
        if len(key) != BATCH_KEY_LEN:
            raise InvalidInput("bad_series_key", f"mf.series key of {len(key)} bytes (8 or 16 expected)")
        batch = pb.SeriesBatch.FromString(value)
    except InvalidInput:
        raise
    except Exception as exc:  # protobuf's DecodeError and friends: a foreign producer's garbage
        raise InvalidInput("bad_series_info", f"unparsable mf.series value: {exc}") from exc
    if batch.format_version != FORMAT_VERSION:
        raise InvalidInput("bad_series_info", f"unknown SeriesBatch format_version {batch.format_version}")
    if len(batch.series_ids) != 8 * len(batch.series):
        raise InvalidInput("bad_series_info", f"SeriesBatch with {len(batch.series_ids)} id bytes"
                                              f" for {len(batch.series)} series")
    ids = np.frombuffer(batch.series_ids, dtype="<u8").tolist()
    return list(zip(ids, batch.series, strict=True))
