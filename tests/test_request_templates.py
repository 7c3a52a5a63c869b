"""A steady native request found whole by its template reads exactly as the general parse reads it."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.ingest import native, remote_write, request_templates
from metricsflow.ingest.native import _parse_general, parse_native_with_tenant
from metricsflow.ingest.request_templates import Template, Templates, field_offsets, first_field
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pb import prometheus_remote_pb2 as rw_pb
from metricsflow.series_id import uvarint

N_SERIES = request_templates.MIN_SERIES + 4


def _body(hosts: list[str], n: int, kind: int, tenant: str, seed: int, odd: int | None = None) -> bytes:
    """A request of one series per host, n samples each from ``seed``; ``odd``: that series gets n + 1."""
    rng = np.random.default_rng(seed)
    req = pb.WriteRequest(tenant=tenant)
    for i, host in enumerate(hosts):
        s = req.series.add(kind=kind)
        s.labels.add(name="__name__", value="cpu")
        s.labels.add(name="host", value=host)
        k = n + 1 if i == odd else n
        s.timestamps_ms_le = rng.integers(-(2**62), 2**62, k).astype("<i8").tobytes()
        s.values_le = rng.random(k).astype("<f8").tobytes()
    return req.SerializeToString()


def _outcome(parse, body: bytes):
    try:
        result, tenant = parse(body)
    except InvalidInput as exc:
        return ("invalid", exc.reason)
    return (tenant, result.rejections,
            [(s.labels, list(s.labels), s.kind, s.timestamps_ms.tobytes(), s.values.tobytes()) for s in result.series])


class _Hits:
    """Counts the template matches of a template class (its ``columns`` answers)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type = Template) -> None:
        self.count = 0
        columns = cls.columns

        def counted(template, body: bytes):
            found = columns(template, body)
            self.count += found is not None
            return found

        monkeypatch.setattr(cls, "columns", counted)


def _learnt(templates: Templates, parse, make, rounds: int = 3):
    """The one template ``parse`` keeps after reading ``make(0)``, ``make(1)``, ... (label sets learnt, the
    layout seen twice)."""
    templates.clear()
    for round_ in range(rounds):
        parse(make(round_))
    template, = (t for t in templates._by_key.values() if not isinstance(t, int))
    return template


def _compared(template) -> np.ndarray:
    """Per byte of the kept body, the bits its template compares."""
    return np.concatenate((template.stamp.mask.view(np.uint8), template.stamp.rest_mask))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.sampled_from([0, 1, 2]), st.sampled_from(["", "acme"]), st.integers(0, 2**32))
def test_a_repeated_request_with_other_samples_reads_as_the_general_parse(n: int, kind: int, tenant: str,
                                                                           seed: int):
    hosts = [f"h{seed % 97}-{i}" for i in range(N_SERIES)]
    with pytest.MonkeyPatch.context() as mp:
        hits = _Hits(mp)
        _learnt(native._TEMPLATES, parse_native_with_tenant, lambda r: _body(hosts, n, kind, tenant, seed + r), 4)
        hits.count = 0
        for round_ in range(4, 7):
            body = _body(hosts, n, kind, tenant, seed + round_)
            assert _outcome(parse_native_with_tenant, body) == _outcome(_parse_general, body)
        assert hits.count == 3


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_byte_changed_outside_the_columns_is_never_read_from_the_template(data: st.DataObject):
    hosts = [f"m{i}" for i in range(N_SERIES)]
    tenant = data.draw(st.sampled_from(["", "acme"]))
    template = _learnt(native._TEMPLATES, parse_native_with_tenant, lambda r: _body(hosts, 2, 0, tenant, r))
    body = bytearray(_body(hosts, 2, 0, tenant, 9))
    at = data.draw(st.sampled_from(np.flatnonzero(_compared(template)).tolist()))
    body[at] = data.draw(st.integers(0, 255).filter(lambda b: b != body[at]))
    changed = bytes(body)
    assert template.columns(changed) is None
    assert _outcome(parse_native_with_tenant, changed) == _outcome(_parse_general, changed)


def test_a_key_whose_layout_changed_is_not_templated_again(monkeypatch: pytest.MonkeyPatch):
    native._TEMPLATES.clear()
    hosts = [f"k{i}" for i in range(N_SERIES)]
    for round_ in range(3):
        parse_native_with_tenant(_body(hosts, 2, 0, "", round_))
    assert len(native._TEMPLATES) == 1
    # Same length and first series, another host further on: the same key, bytes differ outside the columns.
    other = [*hosts[:-1], hosts[-1][:-1] + "x"]
    for round_ in range(4):
        body = _body(other, 2, 0, "", 10 + round_)
        assert _outcome(parse_native_with_tenant, body) == _outcome(_parse_general, body)
    assert len(native._TEMPLATES) == 0


def test_a_request_seen_once_or_with_few_series_makes_no_template():
    native._TEMPLATES.clear()
    hosts = [f"f{i}" for i in range(N_SERIES)]
    parse_native_with_tenant(_body(hosts, 2, 0, "", 0))  # label sets learnt
    parse_native_with_tenant(_body(hosts, 2, 0, "", 1))  # layout seen once
    assert len(native._TEMPLATES) == 0
    few = [f"g{i}" for i in range(request_templates.MIN_SERIES - 1)]
    for round_ in range(5):
        parse_native_with_tenant(_body(few, 2, 0, "", round_))
    assert len(native._TEMPLATES) == 0
    parse_native_with_tenant(_body(hosts, 2, 0, "", 2))
    assert len(native._TEMPLATES) == 1


def test_a_request_with_one_series_of_other_length_is_not_read_from_the_template():
    native._TEMPLATES.clear()
    hosts = [f"o{i}" for i in range(N_SERIES)]
    for round_ in range(3):
        parse_native_with_tenant(_body(hosts, 2, 0, "", round_))
    body = _body(hosts, 2, 0, "", 5, odd=N_SERIES - 1)
    assert _outcome(parse_native_with_tenant, body) == _outcome(_parse_general, body)


def test_templates_stay_within_their_byte_bound():
    templates = Templates(max_bytes=10_000)
    columns = np.array([[2, 20]], dtype=np.int64)
    for i in range(50):
        body = bytes(range(i, i + 40)) * 30  # 1,200 bytes: 2,400 kept per template
        templates.keep((len(body), bytes([i])), Template(body, columns, 8, [{}], native._UNSPECIFIED, ""))
        assert templates._bytes <= 10_000
        assert len(templates) == templates._bytes // 2_400


def _shape(i: int) -> tuple[tuple[int, bytes], bytes, Template]:
    body = bytes(range(i, i + 40)) * 30  # 1,200 bytes: 2,400 kept per template
    return (len(body), bytes([i])), body, Template(body, np.array([[2, 20]], dtype=np.int64), 8, [{}],
                                                   native._UNSPECIFIED, "")


def _sighted(templates: Templates, i: int) -> bool:
    """One request of shape ``i`` as a parser handles it: found, or made on its second sighting."""
    key, body, template = _shape(i)
    if templates.find(key, body) is not None:
        return True
    if templates.wants(key):
        templates.keep(key, template)
    return False


def test_more_request_shapes_than_fit_keep_the_templates_they_have():
    """Seven shapes cycled through room for five: the first five are found every round after they are
    made, the other two never get in (dropping everything when full found none, round after round)."""
    templates = Templates(max_bytes=5 * 2_400)
    found = [[_sighted(templates, i) for i in range(7)] for _ in range(6)]
    assert found[:2] == [[False] * 7] * 2
    assert found[2:] == [[True] * 5 + [False] * 2] * 4
    assert len(templates) == 5 and templates.nbytes == 5 * 2_400 and templates.found == 20


def test_a_template_no_longer_found_gives_its_place_after_a_sweep():
    templates = Templates(max_bytes=3 * 2_400)
    for _ in range(2):
        for i in range(3):
            _sighted(templates, i)  # three templates made
    made = templates.made
    for _ in range(4):  # a sweep once the three have had three finds: shape 2 keeps its first hit, then goes
        for i in (0, 1):  # shape 2's client stopped sending
            assert _sighted(templates, i)
        _sighted(templates, 9)  # a new shape: seen, then wants room
    assert templates.made == made + 1
    assert len(templates) == 3 and templates.nbytes == 3 * 2_400
    assert [_sighted(templates, i) for i in (0, 1, 9)] == [True, True, True]
    key, body, _ = _shape(2)
    assert templates.find(key, body) is None  # its template went


def test_field_offsets_walk_every_wire_type_and_refuse_what_does_not_parse():
    series = b"\x0a\x03abc"
    body = b"\x08\x96\x01" + series + b"\x11" + bytes(8) + b"\x1d" + bytes(4) + b"\x0a\x00" + b"\x12\x02hi"
    assert field_offsets(body, 1) == [(5, 3), (24, 0)]
    assert first_field(body, 1) is None  # a varint field first: not the native request's shape
    assert first_field(b"\x12\x02hi" + series, 1) == (6, 3)
    assert field_offsets(b"\x0a\x05abc", 1) is None  # runs past the end
    assert field_offsets(b"\x0b", 1) is None  # a group
    assert field_offsets(b"\x0a" + uvarint(2**70), 1) is None


@pytest.mark.parametrize("tenant", ["t" * k for k in range(1, 9)])
def test_the_last_bytes_of_a_body_are_compared_too(tenant: str):
    """The template compares 8 bytes at a time and the few left over one by one: a tenant changed in its
    last letter is another request, whatever the body's length."""
    native._TEMPLATES.clear()
    hosts = [f"z{i}" for i in range(N_SERIES)]
    for round_ in range(3):
        parse_native_with_tenant(_body(hosts, 1, 0, tenant, round_))
    assert len(native._TEMPLATES) == 1
    other = tenant[:-1] + "u"
    assert parse_native_with_tenant(_body(hosts, 1, 0, other, 7))[1] == other


# remote_write: the same idea over Sample fields (a value, then a timestamp varint of one length).

def _rw_body(hosts: list[str], n: int, seed: int, ts_base: int) -> bytes:
    rng = np.random.default_rng(seed)
    req = rw_pb.WriteRequest()
    for host in hosts:
        s = req.timeseries.add()
        s.labels.add(name="__name__", value="cpu")
        s.labels.add(name="host", value=host)
        ts = ts_base + np.arange(n, dtype=np.int64)
        values = rng.random(n) + 1.0  # never 0: a zero value leaves its field out (another layout)
        s.samples.extend(rw_pb.Sample(value=v, timestamp=t) for t, v in zip(ts.tolist(), values.tolist(),
                                                                             strict=True))
    return req.SerializeToString()


def _rw_strict(raw: bytes):
    return [({label.name: label.value for label in ts.labels},
             [(s.timestamp, np.float64(s.value).view(np.uint64).item()) for s in ts.samples])
            for ts in rw_pb.WriteRequest.FromString(raw).timeseries]


def _rw_got(result):
    assert not result.rejections
    return [(s.labels, list(zip(s.timestamps_ms.tolist(), s.values.view(np.uint64).tolist(), strict=True)))
            for s in result.series]


# Timestamps whose varints take 1, 2, 6, 8 and 10 (negative) bytes.
_TS_BASES = [1, 200, 1_795_890_600_000, 2**55, -5_000]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.sampled_from(_TS_BASES), st.integers(0, 2**32))
def test_a_repeated_remote_write_request_reads_as_the_strict_parse(n: int, ts_base: int, seed: int):
    hosts = [f"r{seed % 89}-{i}" for i in range(N_SERIES)]
    with pytest.MonkeyPatch.context() as mp:
        hits = _Hits(mp, remote_write._RemoteWriteTemplate)
        _learnt(remote_write._TEMPLATES, remote_write.decode_write_request,
                lambda r: _rw_body(hosts, n, seed + r, ts_base), 4)
        hits.count = 0
        for round_ in range(4, 7):
            raw = _rw_body(hosts, n, seed + round_, ts_base + round_ * 3 % 5)  # same varint lengths
            assert _rw_got(remote_write.decode_write_request(raw)) == _rw_strict(raw)
        assert hits.count == 3


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_remote_write_byte_changed_where_it_counts_is_never_read_from_the_template(data: st.DataObject):
    hosts = [f"w{i}" for i in range(N_SERIES)]
    template = _learnt(remote_write._TEMPLATES, remote_write.decode_write_request,
                       lambda r: _rw_body(hosts, 2, r, 1_795_890_600_000))
    raw = bytearray(_rw_body(hosts, 2, 9, 1_795_890_600_000))
    mask = _compared(template)
    at = data.draw(st.sampled_from(np.flatnonzero(mask).tolist()))
    bit = data.draw(st.sampled_from([b for b in range(8) if mask[at] >> b & 1]))  # a bit the template compares
    raw[at] ^= 1 << bit
    changed = bytes(raw)
    assert template.columns(changed) is None
    try:
        want = _rw_strict(changed)
    except DecodeError:
        return  # not a request any more: the template must not read it (above); the parser's answer is its own
    try:
        got = remote_write.decode_write_request(changed)
    except InvalidInput:
        return
    if not got.rejections:
        assert _rw_got(got) == want


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_timestamp_varint_of_another_length_inside_is_never_read_from_the_template(data: st.DataObject):
    """A sample's length byte stays, yet a continuation bit cleared or set makes the varint end elsewhere
    (its other bytes then read as fields): only the low 7 bits of a timestamp's bytes are free."""
    hosts = [f"v{i}" for i in range(N_SERIES)]
    template = _learnt(remote_write._TEMPLATES, remote_write.decode_write_request,
                       lambda r: _rw_body(hosts, 2, r, 1_795_890_600_000))
    raw = bytearray(_rw_body(hosts, 2, 9, 1_795_890_600_000))
    sample = data.draw(st.integers(0, template.ts_at.size - 1))
    at = int(template.ts_at[sample]) + data.draw(st.integers(0, template.ts_width - 1))
    raw[at] ^= 0x80
    assert template.columns(bytes(raw)) is None


def test_the_collectors_metrics_count_what_the_templates_do():
    from prometheus_client import REGISTRY

    import metricsflow.collector.metrics  # noqa: F401  (registers the templates' metrics)

    def value(parser: str, outcome: str) -> float:
        got = REGISTRY.get_sample_value("mf_collector_request_templates_total", {"parser": parser, "outcome": outcome})
        assert got is not None
        return got

    before = {(p, o): value(p, o) for p in ("native", "remote_write") for o in ("found", "missed", "made")}
    hosts = [f"x{i}" for i in range(N_SERIES)]
    _learnt(native._TEMPLATES, parse_native_with_tenant, lambda r: _body(hosts, 1, 0, "", r))
    parse_native_with_tenant(_body(hosts, 1, 0, "", 5))
    _learnt(remote_write._TEMPLATES, remote_write.decode_write_request,
            lambda r: _rw_body(hosts, 1, r, 1_795_890_600_000))
    other = [*hosts[:-1], "y" + hosts[-1][1:]]  # the same length and first series: the same key
    remote_write.decode_write_request(_rw_body(other, 1, 7, 1_795_890_600_000))
    assert value("native", "made") - before["native", "made"] == 1
    assert value("native", "found") - before["native", "found"] == 1
    assert value("remote_write", "made") - before["remote_write", "made"] == 1
    assert value("remote_write", "missed") - before["remote_write", "missed"] == 1
    assert REGISTRY.get_sample_value("mf_collector_request_templates_held", {"parser": "native"}) == 1
    assert REGISTRY.get_sample_value("mf_collector_request_templates_bytes", {"parser": "native"}) > 0
