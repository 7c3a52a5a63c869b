"""Gorilla chunks (tag 1): delta-of-delta timestamps and XOR-compressed floats.

Bit-for-bit the scheme of Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory
Time Series Database" (VLDB 2015) with the bucket sizes Prometheus uses in
``tsdb/chunkenc/xor.go`` (14/17/20/64-bit dod, leading zeros capped at 31). One
difference: the timestamp and value bit streams are stored one after the other
instead of interleaved, so each can be decoded with bulk numpy reads and a tight
loop that only follows control bits. The first delta is coded as a dod against 0.
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs import _bits
from metricsflow.codecs._wire import Reader, check_increasing, corrupt, uvarint

TAG = 1
NAME = "gorilla"

_U64 = np.uint64
# (prefix, prefix bits, payload bits) per dod bucket; the payload is two's complement
# and accepts [-(2^(b-1) - 1), 2^(b-1)] as in Prometheus' bitRange.
_DOD_BUCKETS = ((0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20))
_LEADING_CAP = 31  # 5-bit field

# Decode table indexed by the next 4 bits of the timestamp stream: prefix length, payload.
_TS_PREFIX_BITS = np.array([1] * 8 + [2] * 4 + [3] * 2 + [4, 4], dtype=np.int64)
_TS_PAYLOAD_BITS = np.array([0] * 8 + [14] * 4 + [17] * 2 + [20, 64], dtype=np.int64)
_TS_STEP_BITS = (_TS_PREFIX_BITS + _TS_PAYLOAD_BITS).astype(np.uint8)


def _leading_zeros(x: np.ndarray) -> np.ndarray:
    smeared = x.copy()
    for shift in (1, 2, 4, 8, 16, 32):
        smeared |= smeared >> _U64(shift)
    zeros: np.ndarray = 64 - np.bitwise_count(smeared).astype(np.int64)
    return zeros


def _trailing_zeros(x: np.ndarray) -> np.ndarray:
    lowest = x & (~x + _U64(1))
    zeros: np.ndarray = np.bitwise_count(lowest - _U64(1)).astype(np.int64)
    return zeros


def _timestamp_fields(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    deltas = np.diff(ts, prepend=ts[:1])  # d_0 = 0; int64 arithmetic wraps, decode wraps too
    dod = np.diff(deltas)
    n = dod.size
    head_val = np.zeros(n, dtype=_U64)
    head_bits = np.ones(n, dtype=np.int64)  # "0" = same delta
    tail_val = dod.view(_U64)
    tail_bits = np.zeros(n, dtype=np.int64)
    placed = dod == 0
    for prefix, prefix_bits, payload_bits in _DOD_BUCKETS:
        half = 1 << (payload_bits - 1)
        fits = ~placed & (dod >= -(half - 1)) & (dod <= half)
        payload = tail_val[fits] & _U64((1 << payload_bits) - 1)
        head_val[fits] = (_U64(prefix) << _U64(payload_bits)) | payload
        head_bits[fits] = prefix_bits + payload_bits
        placed |= fits
    escape = ~placed
    head_val[escape] = 0b1111
    head_bits[escape] = 4
    tail_bits[escape] = 64
    first = (ts[:1].view(_U64), np.array([64]))
    return (
        np.concatenate((first[0], np.column_stack((head_val, tail_val)).ravel())),
        np.concatenate((first[1], np.column_stack((head_bits, tail_bits)).ravel())),
    )


def _value_fields(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bits = values.view(_U64)
    xor = bits[1:] ^ bits[:-1]
    n = xor.size
    head_val = np.zeros(n, dtype=_U64)
    head_bits = np.ones(n, dtype=np.int64)  # "0" = same value
    tail_val = np.zeros(n, dtype=_U64)
    tail_bits = np.zeros(n, dtype=np.int64)
    nz = np.flatnonzero(xor)
    if nz.size:
        x = xor[nz]
        lead = np.minimum(_leading_zeros(x), _LEADING_CAP)
        trail = _trailing_zeros(x)
        # Window reuse depends on the last window written: inherently sequential.
        win_lead, win_trail, reuse = _choose_windows(lead.tolist(), trail.tolist())
        sig = 64 - win_lead - win_trail
        head_val[nz] = np.where(
            reuse,
            _U64(0b10),
            (_U64(0b11) << _U64(11)) | (win_lead.astype(_U64) << _U64(6)) | (sig & 63).astype(_U64),
        )
        head_bits[nz] = np.where(reuse, 2, 13)
        tail_val[nz] = x >> win_trail.astype(_U64)
        tail_bits[nz] = sig
    return (
        np.concatenate((bits[:1], np.column_stack((head_val, tail_val)).ravel())),
        np.concatenate(([64], np.column_stack((head_bits, tail_bits)).ravel())),
    )


def _choose_windows(lead: list[int], trail: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    win_lead: list[int] = []
    win_trail: list[int] = []
    reuse: list[bool] = []
    cur_lead, cur_trail = 255, 0  # 255: no window yet, forces a header
    for lz, tz in zip(lead, trail, strict=True):
        same = lz >= cur_lead and tz >= cur_trail
        if not same:
            cur_lead, cur_trail = lz, tz
        reuse.append(same)
        win_lead.append(cur_lead)
        win_trail.append(cur_trail)
    return np.array(win_lead), np.array(win_trail), np.array(reuse, dtype=bool)


class GorillaCodec:
    tag = TAG
    name = NAME

    def encode(self, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes:
        n = timestamps_ms.size
        if n == 0:
            return bytes((TAG, 0))
        ts_stream = _bits.pack(*_timestamp_fields(timestamps_ms))
        value_stream = _bits.pack(*_value_fields(values))
        return b"".join((bytes((TAG,)), uvarint(n), uvarint(len(ts_stream)), ts_stream, value_stream))

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        reader = Reader(data, 1)
        n = reader.count()
        if n == 0:
            reader.finish()
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        ts_stream = reader.take(reader.uvarint())
        value_stream = data[reader.pos :]
        # Every point after the first costs at least one bit in each stream.
        if (n - 1 + 64) > 8 * min(len(ts_stream), len(value_stream)):
            raise corrupt(f"gorilla streams too short for {n} points")
        return check_increasing(_decode_timestamps(ts_stream, n)), _decode_values(value_stream, n)


def _check_end(end_bit: int, n_bits: int, what: str) -> None:
    # The stream must end inside its last byte: no overrun, no spare whole bytes.
    if not n_bits - 8 < end_bit <= n_bits:
        raise corrupt(f"gorilla {what} stream ends at bit {end_bit} of {n_bits}")


def _decode_timestamps(stream: bytes, n: int) -> np.ndarray:
    view = _bits.BitView(stream)
    t0 = view.read(np.zeros(1, dtype=np.int64), 64).view(np.int64)
    if n == 1:
        _check_end(64, view.n_bits, "timestamp")
        return t0
    nibble = _bits.small_fields(stream, 4)
    step = _TS_STEP_BITS[nibble].tobytes()
    starts = [0] * (n - 1)
    pos = 64
    try:
        for i in range(n - 1):
            starts[i] = pos
            pos += step[pos]
    except IndexError:
        raise corrupt("gorilla timestamp stream truncated") from None
    _check_end(pos, view.n_bits, "timestamp")
    at = np.array(starts, dtype=np.int64)
    code = nibble[at]
    prefix_bits, payload_bits = _TS_PREFIX_BITS[code], _TS_PAYLOAD_BITS[code]
    has = payload_bits > 0
    raw = view.read(at[has] + prefix_bits[has], payload_bits[has])
    width = payload_bits[has].astype(_U64)
    # Sign-extend two's complement payloads (Prometheus: v > 2^(b-1) means negative).
    negative = (width < 64) & (raw > (_U64(1) << (width - _U64(1))))
    raw = np.where(negative, raw - (_U64(1) << width), raw)
    dod = np.zeros(n - 1, dtype=np.int64)
    dod[has] = raw.view(np.int64)
    out = np.empty(n, dtype=np.int64)
    out[0] = t0[0]
    out[1:] = t0[0] + np.cumsum(np.cumsum(dod))  # wraps exactly like the encoder
    return out


def _decode_values(stream: bytes, n: int) -> np.ndarray:
    view = _bits.BitView(stream)
    first = view.read(np.zeros(1, dtype=np.int64), 64)
    if n == 1:
        _check_end(64, view.n_bits, "value")
        return first.view(np.float64)
    control = _bits.small_fields(stream, 2).tobytes()
    sig_field = np.concatenate((_bits.small_fields(stream, 6)[7:], np.zeros(7, np.uint8))).tobytes()
    # Per value: payload bit position, payload width (0 = repeat), header that set the window.
    payload_at = [0] * (n - 1)
    widths = [0] * (n - 1)
    windows = [0] * (n - 1)
    sig, window = 0, -1
    pos = 64
    try:
        for i in range(n - 1):
            c = control[pos]
            if c < 2:
                pos += 1
                continue
            if c == 3:
                sig = sig_field[pos] or 64
                window = pos
                pos += 11
            elif window < 0:
                raise corrupt("gorilla value reuses a window before any was set")
            payload_at[i] = pos + 2
            widths[i] = sig
            windows[i] = window
            pos += 2 + sig
    except IndexError:
        raise corrupt("gorilla value stream truncated") from None
    _check_end(pos, view.n_bits, "value")
    width = np.array(widths, dtype=np.int64)
    nz = np.flatnonzero(width)
    xor = np.zeros(n, dtype=_U64)
    xor[0] = first[0]
    if nz.size:
        win = np.array(windows, dtype=np.int64)[nz]
        lead = view.read(win + 2, 5).astype(np.int64)
        trail = 64 - lead - width[nz]
        if np.any(trail < 0):
            raise corrupt("gorilla value window wider than 64 bits")
        payload = view.read(np.array(payload_at, dtype=np.int64)[nz], width[nz])
        xor[nz + 1] = payload << trail.astype(_U64)
    return np.bitwise_xor.accumulate(xor).view(np.float64)
