"""PointBatch: encode_columns writes what encode_batches writes; format 2's decimal values come
back bit for bit; the in-place read decodes as the protobuf parse does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import (
    DECIMAL_FORMAT_VERSION,
    _canonical_fields,
    _decode_parsed,
    decimal_values,
    decode_batch,
    encode_batches,
    encode_columns,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=20), st.integers(1, 50), st.integers(0, 2**32))
def test_encode_columns_matches_encode_batches(lengths: list[int], max_points: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sids = rng.integers(0, 2**63, len(lengths), dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # top bit too
    ts = rng.integers(0, 2**41, sum(lengths), dtype=np.int64)
    vals = rng.normal(size=sum(lengths))
    runs, at = [], 0
    for sid, n in zip(sids.tolist(), lengths, strict=True):
        runs.append((sid, ts[at:at + n], vals[at:at + n]))
        at += n
    got = encode_columns(sids, np.array(lengths, dtype=np.int64), ts, vals, max_points, 1_764_150_000_000)
    assert got == encode_batches(runs, max_points, 1_764_150_000_000)
    assert all(len(decode_batch(m)) <= max_points for m in got)
    assert sum(len(decode_batch(m)) for m in got) == sum(lengths)


def _bits(values: np.ndarray) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


STALE_NAN = np.array([0x7FF0000000000002], dtype=np.uint64).view(np.float64)[0]  # Prometheus' stale marker


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**53, 2**53), st.integers(0, 6)), min_size=1, max_size=60),
       st.lists(st.tuples(st.integers(0, 59), st.sampled_from([float("nan"), STALE_NAN, -0.0, float("inf"),
                                                               -float("inf"), 1.2345678, 2.0**60, 0.1 + 0.2])),
                max_size=3),
       st.integers(1, 25))
def test_decimal_values_come_back_bit_for_bit(parts: list[tuple[int, int]], odd: list[tuple[int, float]],
                                              max_points: int) -> None:
    values = np.array([m / 10**k for m, k in parts])
    for at, value in odd:
        values[at % values.size] = value
    column = decimal_values(values)
    if not odd and len({k for _, k in parts}) == 1 and max(abs(m) for m, _ in parts) < 2**31:
        assert column is not None and column.exceptions.size == 0  # one digit count throughout is always found
    if column is None:
        return
    value_bytes = column.mantissas.nbytes + 12 * column.exceptions.size
    assert value_bytes <= 0.5 * 8 * values.size  # only where it takes at most half the float64 column
    assert column.mantissas.itemsize in (1, 2, 4)
    for at in {at % values.size for at, _ in odd}:
        assert at in column.exceptions.tolist()  # not a decimal of at most 6 digits within 2^53
    lengths = np.array([values.size // 2, values.size - values.size // 2])
    ts = np.arange(values.size, dtype=np.int64)
    messages = encode_columns(np.array([3, 4], dtype=np.uint64), lengths, ts, column, max_points, 9)
    batches = [decode_batch(m) for m in messages]
    assert all(pb.PointBatch.FromString(m).format_version == DECIMAL_FORMAT_VERSION for m in messages)
    assert _bits(np.concatenate([b.values for b in batches])) == _bits(values)
    assert np.concatenate([b.timestamps_ms for b in batches]).tolist() == ts.tolist()
    kept = np.delete(column.mantissas.astype(np.float64), column.exceptions)
    widest = np.abs(kept).max() if kept.size else 0.0
    assert column.mantissas.itemsize == min(w for w in (1, 2, 4, 8) if widest < 2.0**(8 * w - 1))


def test_the_digits_of_a_write_follow_its_values() -> None:
    values = np.arange(10_000, dtype=np.float64)
    values[5_000:5_010] = 1.25  # a few 2-digit values among whole numbers: kept as exceptions
    column = decimal_values(values)
    assert column is not None and column.decimals == 0 and column.mantissas.dtype == np.int16
    assert column.exceptions.tolist() == list(range(5_000, 5_010))
    values[::3] = 1.25  # a third of them, and a sample that sees whole numbers only: 2 digits
    values[:200] = 7.0
    column = decimal_values(values)
    assert column is not None and column.decimals == 2 and column.exceptions.size == 0
    values[::2] = 1.2345678  # half of them need 7 digits: the floats stay
    assert decimal_values(values) is None
    assert decimal_values(np.zeros(0)) is None


def test_mantissas_too_wide_go_as_exceptions_while_that_pays() -> None:
    rng = np.random.default_rng(7)
    gauges = np.round(rng.uniform(0, 100, 1_000), 2)
    counters = np.round(rng.uniform(1e10, 1e13, 1_000))
    values = gauges.copy()
    values[::20] = counters[::20]  # 5 % byte counters: exceptions beside 2-byte mantissas
    column = decimal_values(values)
    assert column is not None and column.decimals == 2 and column.mantissas.itemsize == 2
    assert column.exceptions.tolist() == list(range(0, 1_000, 20))
    values[::3] = counters[::3]  # a third: float64 takes fewer bytes (as a node-exporter scrape does)
    assert decimal_values(values) is None
    mixed = np.where(np.arange(1_000) % 5 < 2, counters, np.round(gauges, 6) + 1e-6)  # 6 digits beside them
    assert decimal_values(mixed) is None


def test_a_stale_marker_keeps_its_bits_in_a_decimal_batch() -> None:
    values = np.array([1.5, STALE_NAN, 2.25, 3.0, 4.0, 4.5, 5.0, 5.5])
    column = decimal_values(values)
    assert column is not None and column.exceptions.tolist() == [1]
    (message,) = encode_columns(np.array([1], dtype=np.uint64), np.array([8]), np.arange(8), column, 100, 0)
    assert _bits(decode_batch(message).values) == _bits(values)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _uvarint(number << 3 | wire) + payload


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_by(decode, data: bytes) -> tuple | str:  # type: ignore[no-untyped-def]
    """What ``decode`` makes of ``data``: its columns (values by their bits) or the reason it refused."""
    try:
        b = decode(data)
    except InvalidInput as exc:
        return exc.reason
    return (b.series_ids.tolist(), b.run_lengths.tolist(), b.timestamps_ms.tolist(),
            b.values.view(np.uint64).tolist(), b.produced_at_ms)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=6), st.integers(-2**63, 2**63 - 1), st.integers(0, 2**32),
       st.data())
def test_columns_read_in_place_equal_what_the_protobuf_parse_reads(lengths: list[int], produced: int, seed: int,
                                                                    data: st.DataObject) -> None:
    """Any message, canonical or not (fields reordered, repeated, unknown, cut short, a byte
    changed, long varints), decodes exactly as the protobuf parse decodes it, or is refused alike."""
    rng = np.random.default_rng(seed)
    sids = rng.integers(0, 2**64 - 1, len(lengths), dtype=np.uint64)
    ts = rng.integers(-2**62, 2**62, sum(lengths), dtype=np.int64)
    vals = rng.normal(size=sum(lengths))
    version = data.draw(st.sampled_from([1, 1, 2, 2, 3, 2**32 + 1]))
    fields = [_field(1, 0, _uvarint(version)),
              _field(2, 2, _uvarint(8 * len(sids)) + sids.tobytes()),
              _field(3, 2, _uvarint(4 * len(lengths)) + np.array(lengths, dtype=np.uint32).tobytes()),
              _field(4, 2, _uvarint(8 * len(ts)) + ts.tobytes()),
              _field(5, 2, _uvarint(8 * len(vals)) + vals.tobytes()),
              _field(6, 0, _uvarint(produced % 2**64))]
    if version == 2:  # format 2: the mantissas instead of the floats
        width = data.draw(st.sampled_from([1, 2, 4, 8, 8, 3]))
        mantissas = rng.integers(0, 256, width * len(vals), dtype=np.uint8).tobytes()
        n_exceptions = data.draw(st.integers(0, 2))
        positions = np.array(data.draw(st.lists(st.integers(0, len(vals) + 1), min_size=n_exceptions,
                                                max_size=n_exceptions)), dtype=np.uint32).tobytes()
        odd = rng.normal(size=data.draw(st.sampled_from([n_exceptions, n_exceptions, 1]))).tobytes()
        fields[4:] = [fields[5], _field(7, 2, _uvarint(len(mantissas)) + mantissas), _field(8, 0, _uvarint(width)),
                      _field(9, 0, _uvarint(data.draw(st.sampled_from([0, 2, 18, 19, 2**32 + 2])))),
                      _field(10, 2, _uvarint(len(positions)) + positions), _field(11, 2, _uvarint(len(odd)) + odd)]
    change = data.draw(st.sampled_from(["none", "none", "drop", "swap", "repeat", "unknown", "cut", "flip",
                                        "long_varint"]))
    if change == "drop":
        del fields[data.draw(st.integers(0, len(fields) - 1))]
    elif change == "swap":
        i = data.draw(st.integers(0, len(fields) - 2))
        fields[i], fields[i + 1] = fields[i + 1], fields[i]
    elif change == "repeat":
        i = data.draw(st.integers(0, len(fields) - 1))
        fields.insert(data.draw(st.integers(0, len(fields))), fields[i])
    elif change == "unknown":  # unknown numbers, and known ones on the wrong wire type
        fields.insert(data.draw(st.integers(0, len(fields))), data.draw(st.sampled_from(
            [_field(7, 0, b"\x05"), _field(9, 2, b"\x02ab"), _field(12, 0, b"\x01"), _field(20, 0, b"\x01"),
             _field(2, 0, b"\x01")])))
    elif change == "long_varint":
        fields[4 if version == 2 else 5] = _field(6, 0, bytes([0xFF] * 9 + [0x7F]))  # ten bytes, above 2**64 - 1
    message = b"".join(fields)
    if change == "cut" and message:
        message = message[:data.draw(st.integers(0, len(message) - 1))]
    elif change == "flip" and message:
        i = data.draw(st.integers(0, len(message) - 1))
        message = message[:i] + bytes([data.draw(st.integers(0, 255))]) + message[i + 1:]
    assert _read_by(decode_batch, message) == _read_by(_decode_parsed, message)


def test_the_collectors_messages_are_read_in_place() -> None:
    ts = np.arange(6, dtype=np.int64)
    message = encode_columns(np.array([5, 9], dtype=np.uint64), np.array([4, 2]), ts, ts * 0.5, 100, 7)[0]
    assert _canonical_fields(message) is not None
    batch = decode_batch(message)
    start = np.frombuffer(message, np.uint8).__array_interface__["data"][0]
    for column in (batch.series_ids, batch.run_lengths, batch.timestamps_ms, batch.values):
        assert start <= column.__array_interface__["data"][0] < start + len(message)  # no copy
        assert not column.flags.writeable
    mutable = bytearray(message)
    copied = decode_batch(mutable)
    mutable[-20:] = bytes(20)  # a caller's buffer changed afterwards does not change what was decoded
    assert copied.values.tolist() == (ts * 0.5).tolist() and copied.produced_at_ms == 7
    assert batch.produced_at_ms == 7 and batch.values.tolist() == (ts * 0.5).tolist()


def test_a_collectors_format_2_message_is_read_in_place_but_its_values() -> None:
    ts = np.arange(6, dtype=np.int64)
    column = decimal_values(ts * 0.5)
    assert column is not None and column.decimals == 1 and column.mantissas.dtype == np.int8
    message = encode_columns(np.array([5, 9], dtype=np.uint64), np.array([4, 2]), ts, column, 100, 7)[0]
    assert pb.PointBatch.FromString(message).format_version == DECIMAL_FORMAT_VERSION
    assert _canonical_fields(message) is not None
    batch = decode_batch(message)
    start = np.frombuffer(message, np.uint8).__array_interface__["data"][0]
    for column_read in (batch.series_ids, batch.run_lengths, batch.timestamps_ms):
        assert start <= column_read.__array_interface__["data"][0] < start + len(message)
    assert batch.values.tolist() == (ts * 0.5).tolist() and batch.produced_at_ms == 7
    assert len(message) < len(encode_columns(np.array([5, 9], dtype=np.uint64), np.array([4, 2]), ts, ts * 0.5,
                                             100, 7)[0]) - 6 * 6
