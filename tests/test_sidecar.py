"""StatsD sidecar: aggregation semantics, naming, limits, and the process end to end
against an in-process gRPC collector stand-in (real UDP, real gRPC, real SIGTERM)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from metricsflow.client import Client
from metricsflow.ingest.statsd import parse_statsd
from metricsflow.model import MetricKind
from metricsflow.sidecar import QUANTILES, Aggregator, AggregatorLimits, Sidecar, SidecarConfig
from metricsflow.sidecar.aggregate import summarise
from metricsflow.sidecar.server import udp_socket_stats
from tests.support import REPO, wait_for
from tests.test_client import FakeIngest, grpc_server  # noqa: F401 - fixture

Points = dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, MetricKind]]


def fold(agg: Aggregator, *lines: str) -> None:
    agg.add(parse_statsd("\n".join(lines).encode()))


def flushed(agg: Aggregator, now_s: float = 1000.0) -> Points:
    return {(p.name, tuple(sorted(p.labels.items()))): (p.value, p.kind) for p in agg.flush(now_s)}


def test_counters_apply_sample_rate_and_emit_running_totals() -> None:
    agg = Aggregator()
    fold(agg, "req:1|c|@0.1", "req:1|c|@0.1", "req:1|c|@0.1", "req:2|c|#route:/a")
    out = flushed(agg)
    assert out[("req", ())] == (pytest.approx(30.0), MetricKind.COUNTER)
    assert out[("req", (("route", "/a"),))] == (2.0, MetricKind.COUNTER)
    fold(agg, "req:2|c")
    out = flushed(agg, 1010)
    assert out[("req", ())][0] == pytest.approx(32.0)  # cumulative, so rate() works
    assert out[("req", (("route", "/a"),))][0] == 2.0  # re-sent while alive


def test_gauges_last_value_and_deltas() -> None:
    agg = Aggregator()
    fold(agg, "temp:5|g", "temp:+2|g", "temp:-3|g", "fresh:+4|g", "fresh:-1.5|g", "set:1|g", "set:9|g")
    out = flushed(agg)
    assert out[("temp", ())] == (4.0, MetricKind.GAUGE)
    assert out[("fresh", ())][0] == 2.5  # a delta on an unseen gauge starts from 0
    assert out[("set", ())][0] == 9.0  # last value wins
    assert flushed(agg, 1010)[("temp", ())][0] == 4.0  # kept across intervals
    fold(agg, "temp:+1|g")
    assert flushed(agg, 1020)[("temp", ())][0] == 5.0


def test_sets_count_distinct_members_per_interval() -> None:
    agg = Aggregator()
    fold(agg, "users:alice|s", "users:bob|s", "users:alice|s", "users:carol:x|s")
    assert flushed(agg)[("users", ())] == (3.0, MetricKind.GAUGE)
    assert ("users", ()) not in flushed(agg, 1010)  # nothing seen: no point


def test_timers_exact_quantiles_and_summary_shape() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.lognormal(3, 1, 5000), 3)
    agg = Aggregator()
    for chunk in np.array_split(values, 10):
        agg.add(parse_statsd(b"\n".join(b"db.query:%r|ms|#db:main" % v for v in chunk.tolist())))
    fold(agg, "h:1|h", "h:3|h", "d:7|d")
    out = flushed(agg)
    labels = (("db", "main"),)
    for q, expected in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
        value, kind = out[("db_query", (("db", "main"), ("quantile", str(q))))]
        assert kind == MetricKind.GAUGE
        assert value == pytest.approx(expected, rel=1e-12)  # exact, not a sketch
    assert out[("db_query_min", labels)][0] == values.min()
    assert out[("db_query_max", labels)][0] == values.max()
    assert out[("db_query_count", labels)] == (5000.0, MetricKind.COUNTER)
    assert out[("db_query_sum", labels)][0] == pytest.approx(values.sum())
    assert out[("h", (("quantile", "0.5"),))][0] == 2.0
    assert out[("d_count", ())][0] == 1.0
    # count and sum are running totals; quantiles/min/max describe one interval
    fold(agg, "db.query:1|ms|#db:main")
    out = flushed(agg, 1010)
    assert out[("db_query_count", labels)][0] == 5001.0
    assert out[("db_query_max", labels)][0] == 1.0


def test_timer_sample_rate_scales_count_and_sum_not_quantiles() -> None:
    agg = Aggregator()
    fold(agg, "t:10|ms|@0.5", "t:20|ms|@0.5", "t:30|ms")
    out = flushed(agg)
    assert out[("t_count", ())][0] == pytest.approx(5.0)
    assert out[("t_sum", ())][0] == pytest.approx(90.0)
    assert out[("t", (("quantile", "0.5"),))][0] == 20.0


def test_summarise_matches_numpy_on_ragged_inputs() -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.normal(0, 1, n) for n in (1, 2, 3, 17, 1000)]
    stats = summarise(arrays)
    for j, a in enumerate(arrays):
        np.testing.assert_allclose([col[j] for col in stats["quantiles"]], np.quantile(a, QUANTILES), rtol=1e-12)
        assert (stats["min"][j], stats["max"][j]) == (a.min(), a.max())


def test_names_and_tags_become_prometheus_labels() -> None:
    agg = Aggregator()
    fold(agg, "api.http-requests:1|c|#env:prod,role,1st:x,k.v:y")
    (key,) = flushed(agg)
    assert key == ("api_http_requests", (("env", "prod"), ("k_v", "y"), ("key_1st", "x")))  # 'role' has no value


def test_limits_are_counted_and_idle_series_expire() -> None:
    agg = Aggregator(AggregatorLimits(max_series=2, max_samples=3, series_ttl_s=60))
    fold(agg, "a:1|c", "b:1|c", "c:1|c", "t:1|ms", "t:2|ms", "t:3|ms", "t:4|ms", "g:1|g")
    out = flushed(agg, 1000)
    assert agg.dropped == {"series_limit": 1, "sample_limit": 1}
    assert {k[0] for k in out} >= {"a", "b", "g", "t_count"} and ("c", ()) not in out
    assert ("a", ()) in flushed(agg, 1059)
    out = flushed(agg, 1061)  # not updated for > 60 s: forgotten
    assert ("a", ()) not in out and ("g", ()) not in out and ("t_count", ()) not in out


# -- the sidecar with real sockets -----------------------------------------------------------
def test_udp_stats_come_from_proc_net_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        stats = udp_socket_stats(s)
    assert stats is not None and stats[0] == 0


@pytest.fixture
def sidecar_factory() -> Iterator:
    started: list[tuple[Sidecar, threading.Thread]] = []

    def start(collector: str, **cfg: object) -> Sidecar:
        config = SidecarConfig(listen_port=0, collector=collector, metrics_port=None, **cfg)  # type: ignore[arg-type]
        client = Client(collector, tenant=config.tenant, flush_interval_s=0.05, backoff_base_s=0.01)
        sc = Sidecar(config, client)
        thread = threading.Thread(target=sc.serve, daemon=True)
        thread.start()
        started.append((sc, thread))
        return sc

    yield start
    for sc, thread in started:
        sc.stop()
        thread.join(10)


def _series(fake: FakeIngest) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for req in list(fake.accepted):
        for s in req.series:
            labels = {lb.name: lb.value for lb in s.labels}
            key = labels.pop("__name__") + json.dumps(labels, sort_keys=True)
            out.setdefault(key, []).extend(np.frombuffer(s.values_le, "<f8").tolist())
    return out


def test_sidecar_receives_aggregates_and_flushes_over_grpc(grpc_server, sidecar_factory) -> None:  # noqa: F811
    target, fake = grpc_server(["UNAVAILABLE"])  # the first send is retried
    sc = sidecar_factory(target, flush_interval_s=60, tenant="statsd-team")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(100):
            s.sendto(b"hits:1|c|@0.5|#env:prod\nlat:5|ms", sc.address)
        s.sendto(b"garbage", sc.address)
    wait_for(lambda: sc.packets_received == 101, 10, "packets received")
    sc.request_flush()
    got = wait_for(lambda: (g := _series(fake)) and '{"env": "prod"}' in "".join(g) and g, 10, "flushed points")
    assert got['hits{"env": "prod"}'] == [200.0]
    assert got['lat_count{}'] == [100.0]
    assert got['lat{"quantile": "0.99"}'] == [5.0]
    assert fake.requests[-1][1]["x-scope-orgid"] == "statsd-team"
    assert sc.client.stats.retries == 1
    assert sc.parse_errors.labels("bad_line")._value.get() == 1


def test_sidecar_process_flushes_on_sigterm(grpc_server) -> None:  # noqa: F811
    target, fake = grpc_server([])
    proc = subprocess.Popen(
        [sys.executable, "-m", "metricsflow.sidecar", "--listen", "127.0.0.1:0", "--metrics-port", "0",
         "--collector", target, "--flush-interval", "3600", "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        host, port = ready["listening"].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10):
                s.sendto(f"jobs.done:1|c\nqueue.depth:{i}|g".encode(), (host, int(port)))

        def received() -> bool:
            text = urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=2).read().decode()
            return "mf_sidecar_packets_received_total 10.0" in text and "mf_sidecar_kernel_drops_total 0.0" in text

        wait_for(received, 10, "sidecar /metrics shows 10 packets")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    got = _series(fake)
    assert got["jobs_done{}"] == [10.0] and got["queue_depth{}"] == [9.0]


def test_datagram_cache_gives_the_same_result_as_parsing_everything_in_order() -> None:
    rng = np.random.default_rng(11)
    pool = [b"c:1|c|#a:b", b"c:2|c|@0.5", b"g:5|g", b"g:+1|g", b"g:7|g", b"u:x|s", b"u:y|s", b"t:3|ms",
            b"t:4|ms|@0.25", b"bad", b"c:1|c\ng:-2|g", b"m:1:2:3|d"]
    stream = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    sc = Sidecar(SidecarConfig(listen_port=0, collector="127.0.0.1:9", metrics_port=None),
                 Client("127.0.0.1:9", flush_interval_s=60))
    try:
        for lo in range(0, len(stream), 37):
            sc._ingest(stream[lo:lo + 37])
        reference = Aggregator()
        for datagram in stream:
            reference.add(parse_statsd(datagram))
        got, expected = flushed(sc.aggregator), flushed(reference)
        assert got.keys() == expected.keys()
        for key, (value, kind) in expected.items():
            assert got[key][1] == kind
            assert got[key][0] == pytest.approx(value, rel=1e-9), key
        assert sc.cache_hits._value.get() > 2500  # 7 of the 12 datagrams are cacheable
        assert sc.parse_errors.labels("bad_line")._value.get() == stream.count(b"bad")
        assert sc.aggregator.events == reference.events
    finally:
        sc.client.close(0)
        sc.sock.close()
