"""mf.series records: batches and single records decode to the same series; the worker indexes both."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow import series_batch
from metricsflow.errors import InvalidInput
from metricsflow.pb import metricsflow_pb2 as pb
from tables.storage import StorageTables
from tests.test_storage_segments import P, make, tables  # noqa: F401


def _info(i: int, tenant: str = "t1") -> pb.SeriesInfo:
    return pb.SeriesInfo(tenant=tenant, kind=1 + i % 3, first_seen_ms=1_700_000_000_000 + i,
                         labels=[pb.Label(name="__name__", value="cpu"), pb.Label(name="host", value=f"h{i}")])


@given(st.lists(st.integers(0, 2**64 - 1), max_size=series_batch.MAX_SERIES_PER_BATCH * 2 + 3))
@settings(max_examples=40, deadline=None)
def test_batches_carry_every_series_in_order(sids: list[int]) -> None:
    infos = [_info(i) for i in range(len(sids))]
    records = list(series_batch.encode_batches(sids, infos))
    assert all(len(key) == series_batch.BATCH_KEY_LEN for key, _ in records)
    assert max((len(pb.SeriesBatch.FromString(v).series) for _, v in records), default=0) \
        <= series_batch.MAX_SERIES_PER_BATCH
    decoded = [entry for key, value in records for entry in series_batch.decode(key, value)]
    assert [sid for sid, _ in decoded] == sids
    assert [info for _, info in decoded] == infos


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(tenant=TEXT, labels=st.dictionaries(TEXT, TEXT, max_size=8), kind=st.sampled_from([0, 1, 2, 3, -1]),
       first_seen_ms=st.one_of(st.just(0), st.integers(-2**63, 2**63 - 1)),
       kept=st.sampled_from([2, series_batch.LABEL_FIELDS_KEPT]))
@settings(max_examples=300, deadline=None)
def test_hand_encoded_infos_and_batches_are_protobufs_bytes(tenant: str, labels: dict[str, str], kind: int,
                                                           first_seen_ms: int, kept: int) -> None:
    message = pb.SeriesInfo(tenant=tenant, kind=kind, first_seen_ms=first_seen_ms,
                            labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items()) if v])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(series_batch, "LABEL_FIELDS_KEPT", kept)  # 2: the label cache empties itself as it goes
        mp.setattr(series_batch, "_label_fields", {})
        for _ in range(2):  # the second time from the label cache
            encoded = series_batch.encode_info(tenant, labels, kind, first_seen_ms)
            assert encoded == message.SerializeToString()
        assert len(series_batch._label_fields) <= kept  # bounded
    sids = [7, 2**64 - 1]
    by_bytes = list(series_batch.encode_batches(sids, [encoded, encoded]))
    expected = pb.SeriesBatch(format_version=series_batch.FORMAT_VERSION,
                              series_ids=np.array(sids, dtype="<u8").tobytes(), series=[message, message])
    assert by_bytes == list(series_batch.encode_batches(sids, [message, message]))
    assert [value for _, value in by_bytes] == [expected.SerializeToString()]


def test_batches_of_long_labels_stay_under_the_byte_cap() -> None:
    big = [pb.SeriesInfo(tenant="t1", labels=[pb.Label(name=f"l{j}", value=f"{i}" + "x" * 4000) for j in range(30)])
           for i in range(40)]  # ~120 KB each
    records = list(series_batch.encode_batches(list(range(40)), big))
    assert len(records) > 1
    assert all(len(value) <= series_batch.MAX_BATCH_BYTES + 64 for _, value in records)
    decoded = [entry for key, value in records for entry in series_batch.decode(key, value)]
    assert [sid for sid, _ in decoded] == list(range(40)) and [info for _, info in decoded] == big


def test_batch_key_names_the_set_not_its_order() -> None:
    a = series_batch.batch_key(np.array([3, 1, 2], dtype=np.uint64))
    assert a == series_batch.batch_key(np.array([1, 2, 3], dtype=np.uint64))
    assert a != series_batch.batch_key(np.array([1, 2, 4], dtype=np.uint64))


def test_a_single_record_decodes_as_one_series() -> None:
    info = _info(7)
    [(sid, got)] = series_batch.decode(series_batch.single_key(2**63 + 5), info.SerializeToString())
    assert (sid, got) == (2**63 + 5, info)


def _as_index_takes(entries: list[tuple[int, pb.SeriesInfo]]) -> list[tuple[int, str, dict[str, str], int]]:
    return [(sid, info.tenant, {lb.name: lb.value for lb in info.labels}, int(info.kind)) for sid, info in entries]


@given(st.lists(st.tuples(TEXT, st.lists(st.tuples(TEXT, TEXT), max_size=6), st.sampled_from([0, 1, 3, 7, -1])),
                min_size=1, max_size=5), st.booleans())
@settings(max_examples=150, deadline=None)
def test_series_read_for_the_index_are_the_messages_labels(specs: list, single: bool) -> None:
    """Batches and single records, repeated names (the last wins), unknown kinds: as the messages read."""
    infos = [pb.SeriesInfo(tenant=tenant, kind=kind, labels=[pb.Label(name=k, value=v) for k, v in labels])
             for tenant, labels, kind in specs]
    if single:
        records = [(series_batch.single_key(7), infos[0].SerializeToString())]
    else:
        records = list(series_batch.encode_batches(list(range(len(infos))), infos))
    for key, value in records:
        assert series_batch.decode_series(key, value) == _as_index_takes(series_batch.decode(key, value))


def test_a_label_that_is_not_utf8_refuses_the_record_for_the_index() -> None:
    good = pb.SeriesInfo(tenant="t", labels=[pb.Label(name="__name__", value="abc")]).SerializeToString()
    bad = good.replace(b"abc", b"a\xffc")
    with pytest.raises(InvalidInput) as err:
        series_batch.decode(series_batch.single_key(1), bad)
    assert err.value.reason == "bad_series_info"
    for key, value in [(series_batch.single_key(1), bad),
                       (b"\x00" * 16, pb.SeriesBatch(format_version=1, series_ids=b"\x01" * 8).SerializeToString()
                        + b"\x1a" + bytes([len(bad)]) + bad)]:
        with pytest.raises(InvalidInput) as err:
            series_batch.decode_series(key, value)
        assert err.value.reason == "bad_series_info"


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"\x00" * 9, b"", "bad_series_key"),
    (b"", b"", "bad_series_key"),
    (b"\x00" * 8, b"\xff\xff\xff", "bad_series_info"),
    (b"\x00" * 16, b"\xff\xff\xff", "bad_series_info"),
    (b"\x00" * 16, pb.SeriesBatch(format_version=2).SerializeToString(), "bad_series_info"),
    (b"\x00" * 16, pb.SeriesBatch(format_version=1, series_ids=b"\x00" * 8).SerializeToString(), "bad_series_info"),
])
def test_bad_records_name_their_reason(key: bytes, value: bytes, reason: str) -> None:
    for decode in (series_batch.decode, series_batch.decode_series):
        with pytest.raises(InvalidInput) as err:
            decode(key, value)
        assert err.value.reason == reason


def test_worker_indexes_batches_and_single_records_and_rebuilds_from_its_table(tables: StorageTables) -> None:  # noqa: F811
    storage = make(tables)
    [(key, value)] = series_batch.encode_batches([10, 11, 12], [_info(0), _info(1), _info(2)])
    assert storage.ingest_series(P, key, value) == 3
    assert storage.ingest_series(P, key, value) == 0  # announced again (another collector)
    assert storage.ingest_series(P, series_batch.single_key(13), _info(3).SerializeToString()) == 1
    [(key2, value2)] = series_batch.encode_batches([12, 14], [_info(2), _info(4)])
    assert storage.ingest_series(P, key2, value2) == 1  # only 14 is new
    with pytest.raises(InvalidInput):
        storage.ingest_series(P, b"\x00" * 16, b"\xff\xff")
    index = storage.state(P).index
    ids = [10, 11, 12, 13, 14]
    assert len(index) == 5 and all(sid in index for sid in ids)
    assert index.labels_of(14) == {"__name__": "cpu", "host": "h4"} and index.kinds[13] == _info(3).kind

    fresh = make(tables)  # a restarted worker: the index comes back from the series table alone
    assert [fresh.state(P).index.label_key(sid) for sid in ids] == [index.label_key(sid) for sid in ids]
    assert fresh.state(P).index.select("t1", []) == index.select("t1", [])
