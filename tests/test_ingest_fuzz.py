"""Every parser, fed random and mutated bodies, returns a result or raises InvalidInput.

Bounded: ~150 examples per parser and input family, no deadline per example;
the whole file runs in a few seconds.
"""

from __future__ import annotations

import os

import cramjam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.ingest.influx_line import parse_influx_line
from metricsflow.ingest.json_points import parse_json_points
from metricsflow.ingest.native import encode_native, parse_native
from metricsflow.ingest.otlp import encode_otlp, parse_otlp
from metricsflow.ingest.remote_write import decode_write_request, encode_remote_write, parse_remote_write
from metricsflow.ingest.statsd import StatsdBatch, parse_statsd
from metricsflow.model import STALE_NAN, MetricKind, ParseResult, SeriesSamples

NOW_MS = 1_700_000_000_000
# MF_FUZZ_EXAMPLES raises the bound for a longer local hunt (CI keeps the default).
FUZZ = settings(
    max_examples=int(os.environ.get("MF_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_SERIES = [
    SeriesSamples(
        {"__name__": "cpu", "host": "a", "dc": "x"}, [1000, 2000], [0.0, STALE_NAN], MetricKind.COUNTER
    ),
    SeriesSamples({"__name__": "mem", "host": "b"}, [1000], [2.5], MetricKind.GAUGE),
]
_VALID = {
    "remote_write": encode_remote_write(_SERIES),
    "remote_write_raw": bytes(cramjam.snappy.decompress_raw(encode_remote_write(_SERIES))),
    "native": encode_native(_SERIES),
    "native_packed": encode_native(_SERIES, columns=False),
    "otlp": encode_otlp(_SERIES, {"service.name": "svc", "host.name": "h"}),
    "influx": (
        b"cpu,host=a,dc=x usage=1.5,idle=2i,ok=t 1000000000\n"
        b'wea\\ ther,loc=us\\,mid temp\\=x=82,s="a \\"q\\" b" 1465839830100400200\n# c\n'
    ),
    "json": (
        b'{"metrics": [{"metric_name": "cpu", "timestamp": 1, "value": 1.5, "tags": {"h": "a"}},'
        b' {"metric_name": "x", "value": "NaN", "kind": "counter"}]}'
    ),
    "statsd": b"a.b:1|c|@0.5|#env:prod,x\nt:1:2|ms\ng:-1|g\ns:m|s|T1700000000\n",
}


def _parsers():
    return {
        "remote_write": lambda b: parse_remote_write(b),
        "remote_write_raw": decode_write_request,
        "native": parse_native,
        "native_packed": parse_native,
        "otlp": lambda b: parse_otlp(b, now_ms=NOW_MS),
        "influx": lambda b: parse_influx_line(b, now_ms=NOW_MS),
        "json": lambda b: parse_json_points(b, now_ms=NOW_MS),
        "statsd": parse_statsd,
    }


PARSERS = _parsers()


def _check(name: str, body: bytes) -> None:
    try:
        out = PARSERS[name](body)
    except InvalidInput as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert isinstance(out, (ParseResult, StatsdBatch))
    if isinstance(out, ParseResult):
        for s in out.series:
            assert isinstance(s, SeriesSamples)
            assert s.timestamps_ms.dtype == np.int64 and s.values.dtype == np.float64
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in s.labels.items())
        for r in out.rejections:
            assert r.reason and r.points >= 0


@st.composite
def _mutated(draw, name: str) -> bytes:
    body = bytearray(_VALID[name])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        if not body:
            body += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(body) - 1))
        if op == "flip":
            body[i] = draw(st.integers(0, 255))
        elif op == "insert":
            body[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del body[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del body[i:]
        else:
            j = draw(st.integers(i, len(body)))
            body[j:j] = body[i:j]
    return bytes(body)


@pytest.mark.parametrize("name", sorted(_VALID))
@FUZZ
@given(body=st.binary(max_size=512))
def test_random_bytes(name: str, body: bytes) -> None:
    _check(name, body)


@pytest.mark.parametrize("name", sorted(_VALID))
@FUZZ
@given(data=st.data())
def test_mutated_valid_body(name: str, data: st.DataObject) -> None:
    _check(name, data.draw(_mutated(name)))


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list(' ,=\\"#\n\t\rtTfF0123456789.eEiu-+abc')), max_size=200))
def test_influx_grammar_soup(text: str) -> None:
    _check("influx", text.encode())


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list(":|@#,.\nT0123456789+-abcgmshd_{}")), max_size=120))
def test_statsd_grammar_soup(text: str) -> None:
    _check("statsd", text.encode())


@FUZZ
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )
)
def test_json_shapes(doc) -> None:
    import json

    for body in (json.dumps(doc).encode(), json.dumps({"metrics": [doc]}).encode()):
        _check("json", body)


def test_valid_bodies_parse_cleanly():
    for name, body in _VALID.items():
        out = PARSERS[name](body)
        assert len(out.series if isinstance(out, ParseResult) else out.names) > 0, name


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Structurally valid protobuf with random field numbers and wire types: reaches the
# "same bytes, different declaration" paths (wire-type confusion) that flipped bits rarely hit.
_pb_message = st.recursive(
    st.just(b""),
    lambda inner: st.lists(
        st.tuples(st.integers(1, 8), st.sampled_from([0, 1, 2, 5]), inner, st.integers(0, 2**64 - 1)),
        max_size=5,
    ).map(
        lambda fields: b"".join(
            _varint(number << 3 | wt)
            + (
                _varint(n)
                if wt == 0
                else n.to_bytes(8, "little")
                if wt == 1
                else (n & 0xFFFFFFFF).to_bytes(4, "little")
                if wt == 5
                else _varint(len(payload)) + payload
            )
            for number, wt, payload, n in fields
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("name", ["remote_write_raw", "native", "otlp"])
@FUZZ
@given(body=_pb_message)
def test_protobuf_field_soup(name: str, body: bytes) -> None:
    _check(name, body)
