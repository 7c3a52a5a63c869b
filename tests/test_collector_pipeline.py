"""IngestPipeline: the request-wide fast path stores and refuses exactly what per-series validation does.

The reference below is the pipeline as it was written per series (validate, then
sort/dedup and encode each series' run); the pipeline now checks timestamps once per
request and lays partitions out with numpy, and must give the same outcome, the same
points per partition and the same announcements.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricsflow import series_batch
from metricsflow.collector.kafka_writer import Message
from metricsflow.collector.pipeline import MAX_REASONS, IngestPipeline, _RecentSeries
from metricsflow.collector.validation import Limits, check_labels, validate
from metricsflow.config import Settings
from metricsflow.errors import BackendUnavailable
from metricsflow.model import MetricKind, ParseResult, Rejection, SampleColumns, SeriesSamples, UniformRuns
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import decode_batch
from metricsflow.samples import sort_and_dedup
from metricsflow.series_id import partition_for, series_id

SETTINGS = Settings(partitions=4, max_points_per_message=7, max_past_ms=600_000, max_future_ms=600_000)
# Offsets from now far from the window edges (±600 s), so the clock moving during a test changes nothing.
OFFSETS_MS = (-1_200_000, -300_000, -20_000, -10_000, 0, 10_000, 1_200_000)
LABEL_SETS = (
    {"__name__": "cpu", "host": "a"},
    {"__name__": "cpu", "host": "b", "dc": ""},
    {"host": "b", "__name__": "cpu"},  # same series as above, other order
    {"__name__": "mem", "zone": "z1"},
    {"__name__": "bad-name"},
    {"host": "nameless"},
    {"__name__": "m", "__reserved": "x"},
)


class RecordingWriter:
    """Keeps what the pipeline hands to Kafka."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def write(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)


def _accept(pipeline: IngestPipeline, parsed: ParseResult, tenant: str = "t1"):
    return asyncio.run(pipeline.accept(tenant, parsed, "test"))


def _runs(messages: list[Message]) -> dict[int, list[tuple[int, list[int], list[float]]]]:
    """Points per partition as (series id, timestamps, values) runs, adjacent runs of one id joined."""
    out: dict[int, list[tuple[int, list[int], list[float]]]] = defaultdict(list)
    for topic, part, _key, value in messages:
        if topic != SETTINGS.topic("points"):
            continue
        batch = decode_batch(value)
        assert len(batch) <= SETTINGS.max_points_per_message
        at = 0
        for sid, n in zip(batch.series_ids.tolist(), batch.run_lengths.tolist(), strict=True):
            run = (sid, batch.timestamps_ms[at:at + n].tolist(), batch.values[at:at + n].tolist())
            at += n
            if out[part] and out[part][-1][0] == sid and out[part][-1][1][-1] < run[1][0]:
                prev = out[part].pop()  # a run split across two messages
                run = (sid, prev[1] + run[1], prev[2] + run[2])
            out[part].append(run)
    return dict(out)


def _reference(tenant: str, parsed: ParseResult, now_ms: int):
    """The per-series pipeline: outcome, runs per partition, ids announced."""
    limits = Limits.from_settings(SETTINGS)
    ok, rejections = validate(parsed.series, limits, now_ms)
    rejections = parsed.rejections + rejections
    runs: dict[int, list[tuple[int, list[int], list[float]]]] = defaultdict(list)
    announced, accepted = [], 0
    for s in ok:
        sid = series_id(tenant, s.labels)
        ts, vals = sort_and_dedup(s.timestamps_ms, s.values)
        accepted += len(s)
        announced.append(sid)
        if ts.size:
            part = partition_for(sid, SETTINGS.partitions)
            if runs[part] and runs[part][-1][0] == sid and runs[part][-1][1][-1] < ts[0]:
                prev = runs[part].pop()  # same join as _runs: one series twice in a row
                runs[part].append((sid, prev[1] + ts.tolist(), prev[2] + vals.tolist()))
            else:
                runs[part].append((sid, ts.tolist(), vals.tolist()))
    rejected = sum(r.points for r in rejections)
    return (accepted, rejected, rejections[:MAX_REASONS]), dict(runs), list(dict.fromkeys(announced))  # once each


series_strategy = st.builds(
    lambda labels, offsets, seed: SeriesSamples(
        dict(labels), [time.time() * 1000 + o for o in offsets],
        np.random.default_rng(seed).normal(size=len(offsets)), MetricKind.GAUGE),
    st.sampled_from(LABEL_SETS),
    st.lists(st.sampled_from(OFFSETS_MS), min_size=0, max_size=12),
    st.integers(0, 1000),
)


def _as_columns(series: list[SeriesSamples]) -> tuple[list[SeriesSamples], SampleColumns | None]:
    """The series as a parser that reads one buffer hands them out: runs of request-wide columns."""
    if not series:
        return series, None
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    columns = SampleColumns(lengths, np.concatenate([s.timestamps_ms for s in series]),
                            np.concatenate([s.values for s in series]))
    if len({len(s) for s in series}) == 1 and len({s.kind for s in series}) == 1 and len(series[0]):
        # the steady request: runs of one length and kind, read by their labels alone
        return UniformRuns([s.labels for s in series], columns, len(series[0]), series[0].kind), columns
    return columns.runs([s.labels for s in series], [s.kind for s in series]), columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(series_strategy, max_size=12), st.booleans(), st.booleans(), st.booleans())
def test_pipeline_matches_per_series_validation(series: list[SeriesSamples], parse_rejection: bool,
                                                columnar: bool, same_length: bool) -> None:
    shortest = min((len(s) for s in series), default=0)
    if same_length and shortest:  # every run as long: the steady request's shape (UniformRuns)
        series = [SeriesSamples(s.labels, s.timestamps_ms[:shortest], s.values[:shortest], s.kind) for s in series]
    writer = RecordingWriter()
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]
    parsed = ParseResult(series=series, rejections=[Rejection("bad_columns", "x", 2)] if parse_rejection else [])
    if columnar:
        parsed.series, parsed.columns = _as_columns(series)
    want_outcome, want_runs, want_announced = _reference("t1", parsed, int(time.time() * 1000))
    outcome = _accept(pipeline, parsed)
    assert (outcome.accepted, outcome.rejected, outcome.rejections) == want_outcome
    assert _runs(writer.messages) == want_runs
    assert _announced(writer.messages) == _by_partition(want_announced)


def _announced(messages: Sequence[Message]) -> dict[int, list[int]]:
    """Series ids of the mf.series records per partition, in record order (every key checked)."""
    out: dict[int, list[int]] = defaultdict(list)
    for topic, part, key, value in messages:
        if topic == SETTINGS.topic("series"):
            entries = series_batch.decode(key, value)
            assert key == series_batch.batch_key(np.array([sid for sid, _ in entries], dtype=np.uint64))
            out[part] += [sid for sid, _ in entries]
    return dict(out)


def _by_partition(sids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for sid in sids:
        out[partition_for(sid, SETTINGS.partitions)].append(sid)
    return dict(out)


def test_series_are_announced_once_with_their_labels_and_partition() -> None:
    writer = RecordingWriter()
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]
    now = int(time.time() * 1000)
    s = SeriesSamples({"host": "a", "__name__": "cpu", "empty": ""}, [now - 1000, now], [1.0, 2.0], MetricKind.COUNTER)
    _accept(pipeline, ParseResult(series=[s]))
    _accept(pipeline, ParseResult(series=[s]))
    infos = [(p, series_batch.decode(k, v)) for t, p, k, v in writer.messages if t == SETTINGS.topic("series")]
    assert len(infos) == 1 and len(infos[0][1]) == 1
    part, [(got_sid, info)] = infos[0]
    sid = series_id("t1", s.labels)
    assert got_sid == sid and part == partition_for(sid, SETTINGS.partitions)
    assert [(lb.name, lb.value) for lb in info.labels] == [("__name__", "cpu"), ("host", "a")]
    assert (info.tenant, info.kind) == ("t1", MetricKind.COUNTER)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(series_strategy, max_size=12))
def test_labels_known_by_their_dict_give_what_their_names_and_values_give(series: list[SeriesSamples]) -> None:
    # A parser that hands out the same dict for a label set (the native one) lets the pipeline
    # find it by identity on the next request: same points, partitions and refusals.
    pipeline = IngestPipeline(SETTINGS, RecordingWriter())  # type: ignore[arg-type]
    parsed = ParseResult(series=series, shared_labels=True)
    _accept(pipeline, parsed)
    pipeline._writer = writer = RecordingWriter()
    want_outcome, want_runs, _ = _reference("t1", parsed, int(time.time() * 1000))
    outcome = _accept(pipeline, parsed)
    assert (outcome.accepted, outcome.rejected, outcome.rejections) == want_outcome
    assert _runs(writer.messages) == want_runs
    assert len(pipeline._label_sets.shared("t1")) == len({id(s.labels) for s in series})


@pytest.mark.parametrize("shared_labels", [False, True])
def test_tenants_do_not_share_series_ids(shared_labels: bool) -> None:
    writer = RecordingWriter()
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]
    now = int(time.time() * 1000)
    labels = {"__name__": "cpu", "host": "a"}  # one dict for both tenants
    for tenant in ("t1", "t2"):
        _accept(pipeline, ParseResult(series=[SeriesSamples(labels, [now], [1.0])], shared_labels=shared_labels),
                tenant)
    sids = {sid for runs in _runs(writer.messages).values() for sid, _ts, _v in runs}
    assert sids == {series_id("t1", labels), series_id("t2", labels)}


def test_recent_series_forgets_the_oldest_generation_only() -> None:
    recent = _RecentSeries(4)  # generations of 2
    for sid in (1, 2, 3):
        recent.add(sid)
    assert 1 in recent and 3 in recent  # 1 came back from the old generation
    assert recent.missing([1, 2, 3, 4, 4]) == [2, 4, 4]
    roomy = _RecentSeries(100)
    for sid in (7, 8, 9):
        roomy.add(sid)
    assert roomy.missing([9, 7, 9, 8]) == []  # every id announced lately
    assert roomy.missing([9, 6, 7, 6]) == [6, 6]


@pytest.mark.parametrize("shared_labels", [False, True])
def test_label_set_cache_stays_bounded_across_tenants(shared_labels: bool) -> None:
    writer = RecordingWriter()
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]
    pipeline._label_sets._capacity = pipeline._label_sets._shared_capacity = 3
    now = int(time.time() * 1000)
    series = [SeriesSamples({"__name__": "cpu", "host": str(i)}, [now], [1.0]) for i in range(5)]
    for tenant in ("a", "b", "c", "d"):
        outcome = _accept(pipeline, ParseResult(series=series, shared_labels=shared_labels), tenant)
        assert outcome.accepted == 5
    assert pipeline._label_sets._size <= 3 and len(pipeline._label_sets._tenants) <= 1
    assert pipeline._label_sets._shared_size <= 3 and len(pipeline._label_sets._shared) <= 1
    sids = {sid for runs in _runs(writer.messages).values() for sid, _ts, _v in runs}
    assert sids == {series_id(t, s.labels) for t in "abcd" for s in series}


class GatedWriter(RecordingWriter):
    """Holds each write until the test opens it; records the messages of each write apart."""

    def __init__(self, fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.writes: list[list[Message]] = []
        self.gates: list[asyncio.Event] = []
        self._fail = fail

    async def write(self, messages: Sequence[Message]) -> None:
        n = len(self.writes)
        self.writes.append(list(messages))
        self.gates.append(asyncio.Event())
        await self.gates[n].wait()
        if n in self._fail:
            raise BackendUnavailable("kafka did not acknowledge", 2)
        self.messages.extend(messages)


def _request(host: str, n: int = 3) -> ParseResult:
    now = time.time() * 1000
    return ParseResult(series=[SeriesSamples({"__name__": "cpu", "host": f"{host}{i}"}, [now - 1000, now],
                                             [1.0, 2.0], MetricKind.GAUGE) for i in range(n)])


async def _until(condition, what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def test_requests_that_arrive_during_a_write_are_written_together_next() -> None:
    writer = GatedWriter()
    pipeline = IngestPipeline(SETTINGS.replace(max_points_per_message=10_000), writer)  # type: ignore[arg-type]

    async def scenario() -> list:
        first = asyncio.ensure_future(pipeline.accept("t1", _request("a"), "test"))
        await _until(lambda: len(writer.writes) == 1, "the first request is written at once")
        later = [asyncio.ensure_future(pipeline.accept("t1", _request(h), "test")) for h in ("b", "c")]
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(writer.writes) == 1 and not any(t.done() for t in [first, *later])
        writer.gates[0].set()
        await _until(lambda: len(writer.writes) == 2, "the waiting requests are written")
        assert not any(t.done() for t in later)  # not acknowledged before Kafka acknowledges
        writer.gates[1].set()
        return [await t for t in [first, *later]]

    outcomes = asyncio.run(scenario())
    assert [o.accepted for o in outcomes] == [6, 6, 6]
    assert len(writer.writes) == 2
    points = [m for m in writer.writes[1] if m[0] == SETTINGS.topic("points")]
    assert len(points) == len({part for _, part, _, _ in points})  # one message per partition for both requests
    stored = sorted(sid for _, _, _, v in points for sid in decode_batch(v).series_ids.tolist())
    want = sorted(series_id("t1", {"__name__": "cpu", "host": f"{h}{i}"}) for h in "bc" for i in range(3))
    assert stored == want


def test_a_failed_write_fails_every_request_in_it_and_the_next_write_goes_on() -> None:
    writer = GatedWriter(fail={1})
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]

    async def scenario() -> list:
        first = asyncio.ensure_future(pipeline.accept("t1", _request("a"), "test"))
        await _until(lambda: len(writer.writes) == 1, "first write")
        group = [asyncio.ensure_future(pipeline.accept("t1", _request(h), "test")) for h in ("b", "c")]
        await asyncio.sleep(0)
        writer.gates[0].set()
        await _until(lambda: len(writer.writes) == 2, "second write")
        writer.gates[1].set()
        results = await asyncio.gather(first, *group, return_exceptions=True)
        retry = asyncio.ensure_future(pipeline.accept("t1", _request("b"), "test"))
        await _until(lambda: len(writer.writes) == 3, "a write after the failed one")
        writer.gates[2].set()
        return [*results, await retry]

    first, b, c, retry = asyncio.run(scenario())
    assert first.accepted == 6 and retry.accepted == 6
    assert isinstance(b, BackendUnavailable) and isinstance(c, BackendUnavailable)
    # The failed write's series were not taken as announced: the retry announces them again.
    assert any(t == SETTINGS.topic("series") for t, _, _, _ in writer.writes[2])


def test_a_lingering_write_waits_for_more_requests_until_its_points_or_its_time_are_reached() -> None:
    writer = GatedWriter()
    lingering = SETTINGS.replace(max_points_per_message=10_000, collector_linger_ms=60_000.0,
                                 collector_linger_points=12)
    pipeline = IngestPipeline(lingering, writer)  # type: ignore[arg-type]

    async def scenario() -> list:
        first = asyncio.ensure_future(pipeline.accept("t1", _request("a"), "test"))  # 6 points: under 12
        for _ in range(20):
            await asyncio.sleep(0)
        assert not writer.writes  # waits for more: the minute is far from over
        second = asyncio.ensure_future(pipeline.accept("t1", _request("b"), "test"))  # 12: written at once
        await _until(lambda: len(writer.writes) == 1, "the write of both requests")
        writer.gates[0].set()
        return [await first, await second]

    outcomes = asyncio.run(scenario())
    assert [o.accepted for o in outcomes] == [6, 6]
    points = [m for m in writer.writes[0] if m[0] == SETTINGS.topic("points")]
    stored = sorted(sid for _, _, _, v in points for sid in decode_batch(v).series_ids.tolist())
    assert stored == sorted(series_id("t1", {"__name__": "cpu", "host": f"{h}{i}"}) for h in "ab" for i in range(3))

    writer = GatedWriter()
    pipeline = IngestPipeline(lingering.replace(collector_linger_ms=30.0), writer)  # type: ignore[arg-type]

    async def alone() -> tuple[float, int]:
        started = time.perf_counter()
        task = asyncio.ensure_future(pipeline.accept("t1", _request("c"), "test"))
        await _until_s(lambda: len(writer.writes) == 1, 5.0, "the linger ends with one request")
        waited = time.perf_counter() - started
        writer.gates[0].set()
        return waited, (await task).accepted

    waited, accepted = asyncio.run(alone())
    assert accepted == 6 and waited >= 0.03


async def _until_s(condition, seconds: float, what: str) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened in {seconds} s: {what}")


def test_uniform_runs_read_as_the_runs_they_stand_for() -> None:
    labels = [{"__name__": "m", "host": f"h{i}"} for i in range(4)]
    ts = np.arange(12, dtype=np.int64)
    columns = SampleColumns(np.full(4, 3, dtype=np.int64), ts, ts * 0.5)
    runs = UniformRuns(labels, columns, 3, MetricKind.COUNTER)
    want = columns.runs(labels, [MetricKind.COUNTER] * 4)

    def view(s: SeriesSamples) -> tuple:
        return s.labels, s.timestamps_ms.tolist(), s.values.tolist(), s.kind

    assert len(runs) == 4 and [view(s) for s in runs] == [view(s) for s in want]
    assert view(runs[-1]) == view(want[3]) and [view(s) for s in runs[1:3]] == [view(s) for s in want[1:3]]
    with pytest.raises(IndexError):
        runs[4]


def _steady_request(labels: list[dict[str, str]], offsets_ms: list[int], seed: int = 0) -> ParseResult:
    """A request as the native parser reads a known client's: runs of one length, labels dicts it keeps."""
    n = len(offsets_ms)
    now = time.time() * 1000
    series = [SeriesSamples(lb, [now + o for o in offsets_ms], np.random.default_rng(seed + i).normal(size=n),
                            MetricKind.GAUGE) for i, lb in enumerate(labels)]
    runs, columns = _as_columns(series)
    assert isinstance(runs, UniformRuns)
    return ParseResult(series=runs, columns=columns, shared_labels=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(range(len(LABEL_SETS))), min_size=1, max_size=10),
       st.lists(st.sampled_from(OFFSETS_MS), min_size=1, max_size=4, unique=True), st.integers(0, 1000))
def test_a_steady_request_found_again_gives_what_its_series_give(chosen: list[int], offsets: list[int],
                                                                   seed: int) -> None:
    # The same dicts in the same order (a known client's next request): its series ids and partitions
    # come from one probe when none was refused; points, partitions and refusals stay the reference's.
    labels = [dict(LABEL_SETS[i]) for i in sorted(set(chosen))]  # one dict per label set, as the parser's
    pick = [labels[sorted(set(chosen)).index(i)] for i in chosen]
    pipeline = IngestPipeline(SETTINGS, RecordingWriter())  # type: ignore[arg-type]
    for round_ in range(3):
        parsed = _steady_request(pick, sorted(offsets), seed + round_)
        pipeline._writer = writer = RecordingWriter()
        want_outcome, want_runs, _ = _reference("t1", parsed, int(time.time() * 1000))
        outcome = _accept(pipeline, parsed)
        assert (outcome.accepted, outcome.rejected, outcome.rejections) == want_outcome
        assert _runs(writer.messages) == want_runs
    # Kept when no label set was refused (points outside the window do not change what its series are).
    limits = Limits.from_settings(SETTINGS)
    assert len(pipeline._label_sets._requests) == all(check_labels(lb, limits) is None for lb in pick)


def test_a_steady_request_is_kept_once_per_tenant_and_only_without_refusals() -> None:
    writer = RecordingWriter()
    pipeline = IngestPipeline(SETTINGS, writer)  # type: ignore[arg-type]
    good = [{"__name__": "cpu", "host": f"h{i}"} for i in range(6)]
    for tenant in ("t1", "t2", "t1"):
        assert _accept(pipeline, _steady_request(good, [0, 10_000]), tenant).accepted == 12
    assert set(pipeline._label_sets._requests) == {("t1", tuple(map(id, good))), ("t2", tuple(map(id, good)))}
    sids = {sid for runs in _runs(writer.messages).values() for sid, _ts, _v in runs}
    assert sids == {series_id(t, lb) for t in ("t1", "t2") for lb in good}  # tenants never share an entry
    refusing = [*good[:2], {"__name__": "bad-name"}]
    for _ in range(2):
        outcome = _accept(pipeline, _steady_request(refusing, [0]))
        assert (outcome.accepted, outcome.rejected) == (2, 1)
    assert ("t1", tuple(map(id, refusing))) not in pipeline._label_sets._requests


def test_kept_steady_requests_stay_bounded_by_the_series_they_hold() -> None:
    pipeline = IngestPipeline(SETTINGS, RecordingWriter())  # type: ignore[arg-type]
    pipeline._label_sets._shared_capacity = 10
    for r in range(6):
        labels = [{"__name__": "cpu", "host": f"r{r}h{i}"} for i in range(4)]
        assert _accept(pipeline, _steady_request(labels, [0])).accepted == 4
        assert pipeline._label_sets._requests_size <= 10
        assert sum(len(ids) for _t, ids in pipeline._label_sets._requests) == pipeline._label_sets._requests_size
    assert len(pipeline._label_sets._requests) <= 2
    wide = [{"__name__": "cpu", "host": f"wide{i}"} for i in range(11)]
    assert _accept(pipeline, _steady_request(wide, [0])).accepted == 11
    assert pipeline._label_sets._requests_size <= 10


@pytest.mark.parametrize("written_as", [1, 2])
def test_the_point_batch_format_is_the_settings_and_the_points_are_the_same(written_as: int) -> None:
    """Format 2 (the default) writes decimal mantissas, the values that are not decimals beside them;
    format 1 float64; the worker decodes the same bits from either."""
    from metricsflow.collector import metrics

    now = time.time() * 1000
    values = [[1.25, 2.5, 3.75, 4.0, 4.5, 5.0, 5.5, 6.0], [0.5, float("nan"), -0.0, 7.0, 7.5, 8.0, 8.5, 9.0]]
    times = [now - 8000 + 1000 * k for k in range(8)]
    parsed = ParseResult(series=[SeriesSamples({"__name__": "g", "i": str(i)}, times, v, MetricKind.GAUGE)
                                 for i, v in enumerate(values)])
    writer = RecordingWriter()
    counter = metrics.POINTS_WRITTEN_BY_FORMAT[written_as]
    before = counter._value.get()
    outcome = _accept(IngestPipeline(SETTINGS.replace(point_batch_format=written_as), writer), parsed)  # type: ignore[arg-type]
    assert outcome.accepted == 16 and counter._value.get() - before == 16
    points = [v for topic, _, _, v in writer.messages if topic == SETTINGS.topic("points")]
    assert {pb.PointBatch.FromString(v).format_version for v in points} == {written_as}
    got = {}
    for v in points:
        batch = decode_batch(v)
        for sid, vals in zip(batch.point_series_ids().tolist(), batch.values.view(np.uint64).tolist(), strict=True):
            got.setdefault(sid, []).append(vals)
    want = {series_id("t1", {"__name__": "g", "i": str(i)}): np.array(v).view(np.uint64).tolist()
            for i, v in enumerate(values)}
    assert got == want
