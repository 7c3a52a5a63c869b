"""Points written over HTTP JSON, HTTP protobuf and gRPC come back exactly, once each."""

from __future__ import annotations

import math
import time

import grpc
import numpy as np
import orjson
import pytest

from metricsflow.pb import metricsflow_pb2 as pb
from tests.support import Stack, http, metric_samples, query_raw, wait_for

pytestmark = pytest.mark.integration

N_SERIES = 100
N_POINTS = 100  # per series: 10,000 points per protocol


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (ms, deliberately not whole seconds) and values (incl. NaN/±Inf/negative zero)."""
    rng = np.random.default_rng(seed)
    base = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    ts = base + np.arange(N_POINTS, dtype=np.int64) * 10_007 + 3
    vals = np.round(rng.normal(50, 20, (N_SERIES, N_POINTS)), 2)
    vals[0, :4] = [math.nan, math.inf, -math.inf, -0.0]
    vals[1, :] = rng.uniform(-1e300, 1e300, N_POINTS)  # full float64 range must survive
    return ts, vals


def json_body(metric: str, ts: np.ndarray, vals: np.ndarray) -> bytes:
    special = {math.inf: "+Inf", -math.inf: "-Inf"}
    points = []
    for i in range(N_SERIES):
        for t, v in zip(ts.tolist(), vals[i].tolist(), strict=True):
            value: object = "NaN" if math.isnan(v) else special.get(v, v)
            points.append({"metric_name": metric, "timestamp": t, "value": value, "tags": {"series": str(i)}})
    return orjson.dumps({"metrics": points})


def native_request(metric: str, ts: np.ndarray, vals: np.ndarray, packed: bool) -> bytes:
    req = pb.WriteRequest()
    for i in range(N_SERIES):
        s = req.series.add()
        s.labels.add(name="__name__", value=metric)
        s.labels.add(name="series", value=str(i))
        if packed:
            s.timestamps_ms.extend(ts.tolist())
            s.values.extend(vals[i].tolist())
        else:
            s.timestamps_ms_le = ts.astype("<i8").tobytes()
            s.values_le = vals[i].astype("<f8").tobytes()
    return req.SerializeToString()


def assert_exact(result: list[dict], ts: np.ndarray, vals: np.ndarray, metric: str) -> None:
    by_series = {r["metric"]["series"]: r for r in result}
    assert sorted(by_series, key=int) == [str(i) for i in range(N_SERIES)], "series missing or extra"
    for i in range(N_SERIES):
        r = by_series[str(i)]
        assert r["metric"] == {"__name__": metric, "series": str(i)}
        got_ts = np.array([round(p[0] * 1000) for p in r["values"]], dtype=np.int64)
        got_vals = np.array([float(p[1]) for p in r["values"]])
        np.testing.assert_array_equal(got_ts, ts, err_msg=f"{metric} series {i}: timestamps differ")
        same = (got_vals == vals[i]) | (np.isnan(got_vals) & np.isnan(vals[i]))
        assert same.all(), f"{metric} series {i}: values differ at {np.flatnonzero(~same)[:5]}"


def test_every_point_comes_back_exactly_once(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    ts, vals = make_data(1)
    start_s, end_s = (ts[0] - 1000) / 1000, (ts[-1] + 1000) / 1000

    status, _, body = http("POST", stack.collector_url + "/v1/metrics", json_body("rt_json", ts, vals),
                           {"Content-Type": "application/json"})
    assert status == 202, body
    assert orjson.loads(body)["accepted"] == N_SERIES * N_POINTS

    status, _, body = http("POST", stack.collector_url + "/v1/metrics", native_request("rt_pb", ts, vals, False),
                           {"Content-Type": "application/x-protobuf"})
    assert status == 202, body
    assert orjson.loads(body)["accepted"] == N_SERIES * N_POINTS

    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        write = channel.unary_unary("/metricsflow.v1.Ingest/Write", request_serializer=lambda b: b,
                                    response_deserializer=pb.WriteResponse.FromString)
        resp = write(native_request("rt_grpc", ts, vals, True), timeout=30)
        assert (resp.accepted, resp.rejected) == (N_SERIES * N_POINTS, 0)
        # A duplicate send (client retry) must not create duplicates.
        write(native_request("rt_grpc", ts, vals, True), timeout=30)

    for metric in ("rt_json", "rt_pb", "rt_grpc"):
        def complete(metric: str = metric) -> list[dict] | None:
            result = query_raw(worker, metric, start_s, end_s)
            points = sum(len(r["values"]) for r in result)
            return result if len(result) == N_SERIES and points >= N_SERIES * N_POINTS else None

        result = wait_for(complete, 60, f"all points of {metric} queryable")
        assert_exact(result, ts, vals, metric)

    # Every point went to Kafka as format 2: decimal mantissas, the NaN/±Inf/-0.0 and 1e300-range values
    # of series 0 and 1 as exceptions beside them (and back exactly, above).
    written = {labels["format"]: value for labels, value in metric_samples(stack.collector_url,
                                                                            "mf_collector_points_written_total")}
    assert written.get("2") == 4 * N_SERIES * N_POINTS and not written.get("1"), written
    exceptions = metric_samples(stack.collector_url, "mf_collector_value_exceptions_total")
    assert exceptions == [({}, 4 * (4 + N_POINTS))], exceptions  # 4 specials and series 1, per request

    # Both processes froze what start-up (and the worker's rebalance) left alive, and time their collections.
    for url, who in ((stack.collector_url, "collector"), (worker, "worker")):
        samples = dict(line.rsplit(" ", 1) for line in http("GET", url + "/metrics")[2].decode().splitlines()
                       if line.startswith(f"mf_{who}_gc_"))
        assert float(samples[f"mf_{who}_gc_frozen_objects"]) > 1000, who
        assert f'mf_{who}_gc_pause_seconds_count{{generation="0"}}' in samples, who
    assert float(samples['mf_worker_gc_pause_seconds_count{generation="2"}']) >= 1  # the freeze after the rebalance

    # Every partition that received points reports its consumer lag, and it comes down to nothing.
    def lags() -> dict[str, float] | None:
        found = {labels["partition"]: value for labels, value in metric_samples(worker, "mf_worker_consumer_lag")}
        return found if len(found) >= 2 and not any(found.values()) else None

    wait_for(lags, 10, "every partition's consumer lag at 0")


def test_grpc_client_streaming_sums_the_requests(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    ts, vals = make_data(2)
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stream = channel.stream_unary("/metricsflow.v1.Ingest/WriteStream", request_serializer=lambda b: b,
                                      response_deserializer=pb.WriteResponse.FromString)
        halves = [native_request(f"rt_stream_{k}", ts, vals, False) for k in range(2)]
        resp = stream(iter(halves), timeout=30)
    assert resp.accepted == 2 * N_SERIES * N_POINTS
    result = wait_for(lambda: (r := query_raw(worker, "rt_stream_1", ts[0] / 1000, ts[-1] / 1000))
                      and sum(len(x["values"]) for x in r) == N_SERIES * N_POINTS and r, 60, "streamed points")
    assert_exact(result, ts, vals, "rt_stream_1")


def test_grpc_stream_acked_answers_each_request_in_order(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    ts, vals = make_data(3)
    now = int(time.time() * 1000)
    partial = pb.WriteRequest(series=[
        pb.Series(labels=[pb.Label(name="__name__", value="bad name")], timestamps_ms=[now], values=[1.0]),
        pb.Series(labels=[pb.Label(name="__name__", value="rt_acked_partial")], timestamps_ms=[now], values=[2.0]),
    ]).SerializeToString()
    # Requests of different sizes (a prefix of the series each), so an answer out of order shows.
    sizes = [N_SERIES, 7, N_SERIES // 2]
    full = [native_request(f"rt_acked_{k}", ts, vals, False) for k in range(len(sizes))]
    bodies = [pb.WriteRequest(series=pb.WriteRequest.FromString(body).series[:n]).SerializeToString()
              for body, n in zip(full, sizes, strict=True)]
    malformed = b"\x0a\xff\xff\xff\xff\x0f"
    after = native_request("rt_acked_after_error", ts, vals, False)
    answers: list[pb.WriteResponse] = []
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stream = channel.stream_stream("/metricsflow.v1.Ingest/WriteStreamAcked", request_serializer=lambda b: b,
                                       response_deserializer=pb.WriteResponse.FromString)
        # Everything is sent before the first answer is read: the collector stores several at once.
        with pytest.raises(grpc.RpcError) as err:
            for answer in stream(iter([*bodies, partial, malformed, after]), timeout=30):
                answers.append(answer)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "bad_protobuf" in err.value.details()
    # One answer per request up to the malformed one, in order; none after it.
    assert [a.accepted for a in answers] == [n * N_POINTS for n in sizes] + [1]
    assert [a.rejected for a in answers] == [0] * len(sizes) + [1]
    assert answers[-1].rejections[0].reason == "invalid_metric_name"

    for k, n in enumerate(sizes):
        metric = f"rt_acked_{k}"
        result = wait_for(lambda m=metric, n=n: (r := query_raw(worker, m, ts[0] / 1000, ts[-1] / 1000))
                          and sum(len(x["values"]) for x in r) == n * N_POINTS and r, 60, f"{metric} stored")
        by_series = {x["metric"]["series"]: x for x in result}
        assert sorted(by_series, key=int) == [str(i) for i in range(n)]
