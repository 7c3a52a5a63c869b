"""Real client: Debian's Prometheus remote_writes what it scrapes to metricsflow, and both answer alike.

Prometheus (2.42, Debian) scrapes prometheus-node-exporter and itself every second and
ships every sample to the collector's ``/api/v1/write``. Over a time range that is
fully in the past of both systems, the raw samples of every series and the results of
a set of PromQL expressions must be the same in Prometheus' own TSDB and in metricsflow
(metricsflow's copies additionally carry the ``replica`` external label), and the
counters on both sides must agree that every sample sent was accepted.

Range boundaries: metricsflow's engine follows Prometheus 3.x (range windows and the
lookback are left-open), Prometheus 2.42 closes them on the left. The two differ only
for a sample exactly on a window's left edge, so the evaluation times are placed at a
millisecond offset that no scrape timestamp has (see ``_quiet_offset_ms``).
"""

from __future__ import annotations

import math
import os
import shutil
import string
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, Proc, Stack, free_port, get_json, http, wait_for

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
CONFIG_TEMPLATE = REPO / "tests" / "fixtures" / "realclient" / "prometheus.yml"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(PROMETHEUS is None or NODE_EXPORTER is None,
                       reason="needs the `prometheus` and `prometheus-node-exporter` binaries "
                              "(Debian: apt-get install prometheus prometheus-node-exporter)"),
]

EXPRESSIONS = [
    "up",
    'count by (job) ({job=~".+"})',
    'node_cpu_seconds_total{mode="idle"}',
    'rate(node_cpu_seconds_total{mode="idle"}[15s])',
    "sum by (job) (scrape_samples_scraped)",
    "prometheus_tsdb_head_series",
    "node_memory_MemAvailable_bytes",
]
ALL_SERIES = '{job=~".+"}'
# Series Prometheus writes for every scrape itself; they continue (up = 0) when a target is gone.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                 "scrape_samples_post_metric_relabeling", "scrape_series_added"}
MIN_SCRAPES = 20  # per target, before the comparison range is chosen (1 s scrape interval)
SHIPPING_MARGIN_MS = 4000  # the range ends this far before "now": scraped, appended, and shipped
REL_TOL = 1e-9
ABS_TOL = 1e-12  # only for values that are 0 on one side and a rounding residue on the other

Labels = tuple[tuple[str, str], ...]


# --- talking to the two systems ------------------------------------------------------------------


def api(base: str, path: str, **params: object) -> Any:
    status, doc = get_json(f"{base}{path}?{urllib.parse.urlencode(params)}")
    assert status == 200 and doc["status"] == "success", (base, path, params, status, doc)
    return doc["data"]


def exposition(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a /metrics page as (name, labels, value)."""
    status, _, body = http("GET", url, timeout_s=10)
    assert status == 200, (url, status)
    return [(s.name, s.labels, s.value)
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def listening(pid: int) -> list[str]:
    """Local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            addr, port = cols[1].split(":")
            if table == "tcp":
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(addr)))
            else:
                ip = "::" if int(addr, 16) == 0 else f"ipv6:{addr}"
            out.append(f"{ip}:{int(port, 16)}")
    return out


# --- comparing results ---------------------------------------------------------------------------


def key_of(metric: dict[str, str], replica: str | None) -> Labels:
    """Label set without the external label; checks its value where metricsflow has it."""
    labels = dict(metric)
    if replica is not None and "replica" in labels:
        assert labels.pop("replica") == replica, metric
    return tuple(sorted(labels.items()))


def points(values: list[list[Any]]) -> dict[int, float]:
    return {round(float(t) * 1000): float(v) for t, v in values}


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def exact(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def by_key(result: list[dict[str, Any]], replica: str | None, what: str) -> dict[Labels, dict[int, float]]:
    out: dict[Labels, dict[int, float]] = {}
    for series in result:
        key = key_of(series["metric"], replica)
        assert key not in out, f"{what}: two series with labels {key} once `replica` is dropped"
        out[key] = points(series["values"])
    return out


def compare_matrix(what: str, prom: list[dict[str, Any]], mf: list[dict[str, Any]], replica: str,
                   raw: bool = False) -> tuple[int, int, int, dict[Labels, int]]:
    """Same series and the same value at every timestamp.

    Returns (series, samples, samples equal only within the tolerance, stale markers per series).

    ``raw``: Prometheus' range vectors leave out stale markers, metricsflow's raw
    reads return them as NaN; a NaN that Prometheus does not have is counted as one.
    """
    p, m = by_key(prom, None, f"{what} (prometheus)"), by_key(mf, replica, f"{what} (metricsflow)")
    only_prom, only_mf = sorted(p.keys() - m.keys()), sorted(m.keys() - p.keys())
    assert not only_prom and not only_mf, (f"{what}: series differ; only in Prometheus ({len(only_prom)}): "
                                           f"{only_prom[:5]}; only in metricsflow ({len(only_mf)}): {only_mf[:5]}")
    diffs: list[str] = []
    samples = inexact = 0
    stale: dict[Labels, int] = {}
    for key, pv in p.items():
        mv = dict(m[key])
        if raw:
            extra_nan = [t for t, v in mv.items() if t not in pv and math.isnan(v)]
            if extra_nan:
                stale[key] = len(extra_nan)
            for t in extra_nan:
                del mv[t]
        if pv.keys() != mv.keys():
            diffs.append(f"{dict(key)}: timestamps only in Prometheus {sorted(pv.keys() - mv.keys())[:5]}, "
                         f"only in metricsflow {sorted(mv.keys() - pv.keys())[:5]}")
            continue
        equal = exact if raw else same  # raw samples are the very bits Prometheus scraped
        bad = [(t, pv[t], mv[t]) for t in sorted(pv) if not equal(pv[t], mv[t])]
        if bad:
            diffs.append(f"{dict(key)}: (t_ms, prometheus, metricsflow) {bad[:3]} ({len(bad)} of {len(pv)})")
        samples += len(pv)
        inexact += sum(1 for t in pv if not exact(pv[t], mv[t]))
    assert not diffs, f"{what}: {len(diffs)} of {len(p)} series differ:\n  " + "\n  ".join(diffs[:10])
    return len(p), samples, inexact, stale


def _quiet_offset_ms(timestamps_ms: list[int]) -> int:
    """A millisecond-of-second as far as possible from every scrape timestamp's (circularly)."""
    offsets = {t % 1000 for t in timestamps_ms}
    return max(range(0, 1000, 7), key=lambda f: min(min(abs(f - o), 1000 - abs(f - o)) for o in offsets))


# --- the test ------------------------------------------------------------------------------------


def test_prometheus_remote_write_matches_prometheus(stack: Stack, tmp_path: Path) -> None:
    began = time.monotonic()
    stack.start_collector()
    _, worker = stack.start_worker()
    node_port, prom_port = free_port(), free_port()
    prom_url, node_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{node_port}"
    replica = "it-" + stack.prefix.rstrip(".")
    config = tmp_path / "prometheus.yml"
    config.write_text(string.Template(CONFIG_TEMPLATE.read_text()).substitute(
        node_target=f"127.0.0.1:{node_port}", prometheus_target=f"127.0.0.1:{prom_port}",
        write_url=f"{stack.collector_url}/api/v1/write", replica=replica))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    node = Proc("node-exporter", [str(NODE_EXPORTER), f"--web.listen-address=127.0.0.1:{node_port}"],
                env, tmp_path / "node-exporter.log")
    prom = Proc("prometheus", [str(PROMETHEUS), f"--config.file={config}",
                               f"--storage.tsdb.path={tmp_path / 'prometheus-tsdb'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}",
                               "--storage.tsdb.retention.time=1h"],
                env, tmp_path / "prometheus.log")
    try:
        node.start()
        wait_for(lambda: http("GET", node_url + "/metrics", timeout_s=2)[0] == 200, 20,
                 f"node-exporter\n{node.tail()}")
        launched_ms = int(time.time() * 1000)
        prom.start()
        wait_for(lambda: http("GET", prom_url + "/-/ready", timeout_s=2)[0] == 200, 30,
                 f"prometheus ready\n{prom.tail()}")
        for proc in (node, prom):
            assert proc.popen is not None
            addrs = listening(proc.popen.pid)
            assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), (proc.name, addrs)

        # 1. Let it run until metricsflow holds MIN_SCRAPES scrapes of both targets.
        def scraped_enough() -> bool:
            up = api(worker, "/v1/query", query="up", start=launched_ms / 1000 - 1, end=time.time(), tier="raw")
            jobs = {s["metric"].get("job"): len(s["values"]) for s in up["result"]}
            return jobs.keys() == {"node", "prometheus"} and min(jobs.values()) >= MIN_SCRAPES

        wait_for(scraped_enough, 45, f"{MIN_SCRAPES} scrapes of both targets in metricsflow\n{prom.tail()}",
                 interval_s=1)

        # Stop node-exporter: Prometheus writes a stale marker for each of its series and
        # up{job="node"} becomes 0, so the range below also holds series that end.
        node.stop()

        def first_failed_scrape() -> int | None:
            up_node = api(prom_url, "/api/v1/query", query='up{job="node"}[30s]', time=time.time())["result"]
            zeros = [round(float(t) * 1000) for s in up_node for t, v in s["values"] if v == "0"]
            return min(zeros) if zeros else None

        down_ms = wait_for(first_failed_scrape, 10, "Prometheus noticing node-exporter is gone")
        wait_for(lambda: time.time() * 1000 > down_ms + SHIPPING_MARGIN_MS + 3000, 10,
                 "a few scrapes after node-exporter stopped")

        # 2. A range fully in the past of both, evaluation times off every scrape timestamp.
        up_raw = api(prom_url, "/api/v1/query", query="up[1m]", time=time.time())["result"]
        scrape_ms = [round(float(t) * 1000) for s in up_raw for t, _ in s["values"]]
        quiet = _quiet_offset_ms(scrape_ms)
        t1 = (int(time.time() * 1000) - SHIPPING_MARGIN_MS) // 1000 * 1000 + quiet
        if t1 > int(time.time() * 1000) - SHIPPING_MARGIN_MS:
            t1 -= 1000
        t0 = t1 - (t1 - launched_ms) // 1000 * 1000  # first step after Prometheus was launched
        history_s = (t1 - launched_ms) // 1000 + 2  # a raw window holding every sample ever scraped

        # Wait until metricsflow has the end of the range: every series Prometheus has a
        # sample of in (t1, t1 + 2 s] has one in metricsflow too (so all before it arrived).
        def tail_of(result: list[dict[str, Any]], replica_: str | None) -> set[Labels]:
            return {key_of(s["metric"], replica_) for s in result if s["values"]}

        def caught_up() -> bool:
            after = t1 + 2000
            prom_tail = tail_of(api(prom_url, "/api/v1/query", query=f"{ALL_SERIES}[1999ms]",
                                    time=after / 1000)["result"], None)
            mf_tail = tail_of(api(worker, "/v1/query", query=ALL_SERIES, start=(t1 + 1) / 1000, end=after / 1000,
                                  tier="raw")["result"], replica)
            return bool(prom_tail) and prom_tail <= mf_tail

        wait_for(lambda: time.time() * 1000 > t1 + 3000 and caught_up(), 20,
                 "metricsflow holding every series up to the end of the range", interval_s=0.5)

        # 3. Raw samples of every series, then each expression as a range query.
        print(f"\nremote_write vs Prometheus {PROMETHEUS}: range {(t1 - t0) / 1000:.0f} s "
              f"[{t0 / 1000:.3f}, {t1 / 1000:.3f}], step 1s; scrapes at ms-of-second "
              f"{sorted({t % 1000 for t in scrape_ms})[:8]}, evaluation at {quiet}")
        prom_raw = api(prom_url, "/api/v1/query", query=f"{ALL_SERIES}[{history_s}s]", time=t1 / 1000)["result"]
        mf_raw = api(worker, "/v1/query", query=ALL_SERIES, start=(t1 - history_s * 1000) / 1000, end=t1 / 1000,
                     tier="raw")["result"]
        n_series, n_samples, _, stale = compare_matrix(f"raw {ALL_SERIES}[{history_s}s]", prom_raw, mf_raw,
                                                      replica, raw=True)
        assert n_series > 100 and n_samples > n_series * 10, (n_series, n_samples)
        assert all(s["metric"].get("replica") == replica for s in mf_raw), "external label missing in metricsflow"
        # Every series node-exporter exposed ended with one stale marker (not the scrape's own series).
        node_series = {key for key in (key_of(s["metric"], None) for s in prom_raw)
                       if dict(key)["job"] == "node" and dict(key)["__name__"] not in SCRAPE_SERIES}
        assert node_series and {k: stale.get(k) for k in node_series} == dict.fromkeys(node_series, 1), \
            [(dict(k), stale.get(k)) for k in node_series if stale.get(k) != 1][:5]
        print(f"  raw samples {ALL_SERIES}[{history_s}s]: {n_series} series, {n_samples} samples equal; "
              f"{sum(stale.values())} stale markers in {len(stale)} series "
              f"({len(node_series)} node-exporter series ended at {down_ms / 1000:.3f})")
        for expr in EXPRESSIONS:
            params = {"query": expr, "start": t0 / 1000, "end": t1 / 1000, "step": "1s"}
            prom_res = api(prom_url, "/api/v1/query_range", **params)
            mf_res = api(worker, "/api/v1/query_range", **params)
            assert prom_res["resultType"] == mf_res["resultType"] == "matrix", (expr, prom_res, mf_res)
            s, n, inexact, _ = compare_matrix(expr, prom_res["result"], mf_res["result"], replica)
            assert s and n, f"{expr}: Prometheus has no data in the range"
            print(f"  {expr}: {s} series, {n} points equal ({n - inexact} bit-exact)")

        # 4. Counters: nothing failed on the way, and the collector accepted exactly what was sent.
        def snapshot() -> tuple[float, float] | None:
            before = total(exposition(prom_url + "/metrics"), "prometheus_remote_storage_samples_total")
            accepted = total(exposition(stack.collector_url + "/metrics"), "mf_collector_points_accepted_total",
                             protocol="remote_write")
            after = total(exposition(prom_url + "/metrics"), "prometheus_remote_storage_samples_total")
            return (before, accepted) if before == accepted == after else None

        sent, accepted = wait_for(snapshot, 15, "a moment with no remote_write request in flight", interval_s=0.05)
        prom_metrics = exposition(prom_url + "/metrics")
        for name in ("prometheus_remote_storage_samples_failed_total",
                     "prometheus_remote_storage_samples_retried_total",
                     "prometheus_remote_storage_samples_dropped_total",
                     "prometheus_remote_storage_metadata_failed_total"):
            assert total(prom_metrics, name) == 0, (name, total(prom_metrics, name), prom.tail())
        collector_metrics = exposition(stack.collector_url + "/metrics")
        codes = {lab["code"]: v for n, lab, v in collector_metrics
                 if n == "mf_collector_requests_total" and lab.get("protocol") == "remote_write" and v}
        rejected = total(collector_metrics, "mf_collector_points_rejected_total", protocol="remote_write")
        assert set(codes) == {"204"} and rejected == 0, (codes, rejected)
        assert sent == accepted > n_samples, (sent, accepted, n_samples)
        print(f"  Prometheus sent {sent:.0f} samples (0 failed, 0 retried, 0 dropped; all requests answered 204); "
              f"collector accepted {accepted:.0f}; {time.monotonic() - began:.0f} s")
    finally:
        prom.stop()
        node.stop()
