"""pointbatch.encode_columns writes the same messages as encode_batches for the same runs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.pointbatch import _canonical_spans, _decode_parsed, decode_batch, encode_batches, encode_columns


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
    fields = [_field(1, 0, _uvarint(data.draw(st.sampled_from([1, 1, 1, 2, 2**32 + 1])))),
              _field(2, 2, _uvarint(8 * len(sids)) + sids.tobytes()),
              _field(3, 2, _uvarint(4 * len(lengths)) + np.array(lengths, dtype=np.uint32).tobytes()),
              _field(4, 2, _uvarint(8 * len(ts)) + ts.tobytes()),
              _field(5, 2, _uvarint(8 * len(vals)) + vals.tobytes()),
              _field(6, 0, _uvarint(produced % 2**64))]
    change = data.draw(st.sampled_from(["none", "none", "drop", "swap", "repeat", "unknown", "cut", "flip",
                                        "long_varint"]))
    if change == "drop":
        del fields[data.draw(st.integers(0, 5))]
    elif change == "swap":
        i = data.draw(st.integers(0, 4))
        fields[i], fields[i + 1] = fields[i + 1], fields[i]
    elif change == "repeat":
        i = data.draw(st.integers(0, 5))
        fields.insert(data.draw(st.integers(0, 6)), fields[i])
    elif change == "unknown":
        fields.insert(data.draw(st.integers(0, 6)), data.draw(st.sampled_from(
            [_field(7, 0, b"\x05"), _field(9, 2, b"\x02ab"), _field(20, 0, b"\x01"), _field(2, 0, b"\x01")])))
    elif change == "long_varint":
        fields[5] = _field(6, 0, bytes([0xFF] * 9 + [0x7F]))  # ten bytes, above 2**64 - 1
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
    assert _canonical_spans(message) is not None
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
