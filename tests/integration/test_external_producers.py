"""Producers in any language write native WriteRequests to mf.ingest; the points become queryable.

The worker's mf.ingest agent (agents/ingest.py) validates, hashes and re-partitions
those messages through the collector's pipeline. Three producers are exercised
against the real broker: Python (aiokafka), the Go example in
examples/go-producer (built here; skipped without `go`) and kcat (skipped
without it). Each asserts exact timestamps and values, the tenant, and that the
series id the producer computed is the one metricsflow uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from metricsflow import series_batch
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.series_id import partition_for, series_id
from tests.support import REPO, Stack, http, metric_value, query_raw, wait_for

pytestmark = pytest.mark.integration

GO_MODULE = REPO / "examples" / "go-producer"
GO_BUILD_TIMEOUT_S = 300  # first build downloads modules and compiles franz-go: ~1-2 min on a cold cache
STORE_TIMEOUT_S = 90


def ingest_topic(stack: Stack) -> str:
    return f"{stack.prefix}ingest"


def base_ms() -> int:
    """An hour ago on a whole second: inside the accept window, not a round number of points."""
    return (int(time.time() * 1000) - 3_600_000) // 1000 * 1000


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None,
            records: list[tuple[int, bytes, bytes]] = ()) -> None:
    """``values`` with one key to any partition, then ``records`` as (partition, key, value)."""
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=key)
            for part, rec_key, value in records:
                await producer.send_and_wait(topic, value, key=rec_key, partition=part)
        finally:
            await producer.stop()

    asyncio.run(go())


def write_request(tenant: str, series: list[tuple[dict[str, str], np.ndarray, np.ndarray]],
                  packed: bool = False) -> bytes:
    req = pb.WriteRequest(tenant=tenant)
    for labels, ts, vals in series:
        s = req.series.add(kind=pb.METRIC_KIND_GAUGE)
        for k, v in sorted(labels.items()):
            s.labels.add(name=k, value=v)
        if packed:
            s.timestamps_ms.extend(ts.tolist())
            s.values.extend(vals.tolist())
        else:
            s.timestamps_ms_le = ts.astype("<i8").tobytes()
            s.values_le = vals.astype("<f8").tobytes()
    return req.SerializeToString()


def wait_complete(worker: str, selector: str, start_ms: int, end_ms: int, n_series: int, n_points: int,
                  tenant: str | None = None) -> list[dict[str, Any]]:
    """Wait until the selector returns n_series series holding n_points points in all; return the result."""
    def complete() -> list[dict[str, Any]] | None:
        result = query_raw(worker, selector, start_ms / 1000 - 1, end_ms / 1000 + 1, tenant=tenant)
        points = sum(len(r["values"]) for r in result)
        return result if len(result) >= n_series and points >= n_points else None

    return wait_for(complete, STORE_TIMEOUT_S, f"{n_points} points of {selector} (tenant {tenant}) queryable")


def as_arrays(result_series: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    ts = np.array([round(p[0] * 1000) for p in result_series["values"]], dtype=np.int64)
    vals = np.array([float(p[1]) for p in result_series["values"]], dtype=np.float64)
    return ts, vals


def assert_exact(result: list[dict[str, Any]], expected: dict[str, tuple[np.ndarray, np.ndarray]],
                 key_label: str) -> None:
    """``expected`` maps the value of ``key_label`` to the exact (timestamps, values) of that series."""
    got = {r["metric"][key_label]: r for r in result}
    assert sorted(got) == sorted(expected), f"series differ: got {sorted(got)}, want {sorted(expected)}"
    for key, (ts, vals) in expected.items():
        got_ts, got_vals = as_arrays(got[key])
        np.testing.assert_array_equal(got_ts, ts, err_msg=f"{key_label}={key}: timestamps differ")
        same = (got_vals == vals) | (np.isnan(got_vals) & np.isnan(vals))
        assert same.all(), f"{key_label}={key}: values differ at {np.flatnonzero(~same)[:5]}: {got_vals[:5]}"


def worker_counter(worker: str, name: str, **labels: str) -> float:
    """One sample of the worker's own /metrics (0 when absent)."""
    return metric_value(worker, name, **labels) or 0.0


# --- (a) Python ------------------------------------------------------------------------------------

def test_python_producer_points_become_queryable(stack: Stack) -> None:
    _, worker = stack.start_worker()  # creates <prefix>ingest and consumes it
    base = base_ms()
    n = 50
    ts = base + np.arange(n, dtype=np.int64) * 10_007 + 3
    rng = np.random.default_rng(7)
    series = []
    for i in range(6):
        vals = np.round(rng.normal(100, 30, n), 3)
        if i == 0:
            vals[:4] = [np.nan, np.inf, -np.inf, -0.0]
        if i == 1:
            vals[:] = rng.uniform(-1e300, 1e300, n)
        series.append(({"__name__": "py_ingest", "series": str(i)}, ts, vals))
    # Columns for "acme", packed fields for the empty tenant (the consumer reads it as "default").
    produce(stack.bootstrap, ingest_topic(stack),
            [write_request("acme", series[:3]), write_request("", series[3:], packed=True)], key=b"py")

    end = int(ts[-1])
    acme = wait_complete(worker, "py_ingest", base, end, 3, 3 * n, tenant="acme")
    assert_exact(acme, {lab["series"]: (t, v) for lab, t, v in series[:3]}, "series")
    default = wait_complete(worker, "py_ingest", base, end, 3, 3 * n, tenant="default")
    assert_exact(default, {lab["series"]: (t, v) for lab, t, v in series[3:]}, "series")
    assert all(r["metric"] == {"__name__": "py_ingest", "series": r["metric"]["series"]} for r in acme + default)
    assert wait_for(lambda: worker_counter(worker, "mf_worker_ingest_accepted_total") >= 6 * n, 10,
                    "mf_worker_ingest_accepted_total counts the points")


def test_ingest_rejections_are_counted_and_valid_series_survive(stack: Stack) -> None:
    _, worker = stack.start_worker()
    now = int(time.time() * 1000) // 1000 * 1000
    good = ({"__name__": "ingest_ok", "case": "mixed"}, np.array([now], dtype=np.int64), np.array([7.25]))
    bad_name = ({"__name__": "1-bad name"}, np.array([now], dtype=np.int64), np.array([1.0]))
    too_old = ({"__name__": "ingest_old"}, np.array([now - 30 * 86_400_000], dtype=np.int64), np.array([1.0]))
    produce(stack.bootstrap, ingest_topic(stack), [
        b"\x0a\xff\xff\xff\xff\x0f",  # not a WriteRequest: the whole message is refused
        write_request("bad tenant!", [good]),  # tenant must match [A-Za-z0-9_.-]{1,64}
        write_request("default", [bad_name, good, too_old]),  # per-series refusals, the good one is kept
    ])
    result = wait_complete(worker, "ingest_ok", now, now, 1, 1, tenant="default")
    assert [r["values"] for r in result] == [[[now // 1000, "7.25"]]]
    for reason in ("bad_protobuf", "invalid_tenant", "invalid_metric_name", "too_old"):
        wait_for(lambda reason=reason: worker_counter(worker, "mf_worker_ingest_rejected_total", reason=reason) >= 1,
                 20, f"mf_worker_ingest_rejected_total{{reason={reason!r}}}")


def test_series_records_of_other_producers_are_indexed_or_counted(stack: Stack) -> None:
    """mf.series: a single SeriesInfo record (the format before batches) is indexed like a batch; garbage is
    counted by reason and the records after it are still indexed."""
    _, worker = stack.start_worker()

    def info(host: str) -> tuple[int, int, pb.SeriesInfo]:
        labels = {"__name__": "announced_only", "host": host}
        sid = series_id("default", labels)
        return sid, partition_for(sid, stack.partitions), pb.SeriesInfo(
            tenant="default", kind=pb.METRIC_KIND_GAUGE, first_seen_ms=base_ms(),
            labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items())])

    single_sid, single_part, single = info("single")
    batch_sid, batch_part, batched = info("batched")
    [(batch_key, batch_value)] = series_batch.encode_batches([batch_sid], [batched])
    produce(stack.bootstrap, f"{stack.prefix}series", [], records=[
        (single_part, b"\x00" * 9, single.SerializeToString()),  # a key of neither length
        (batch_part, b"\x01" * 16, b"\xff\xff\xff"),  # a batch key with an unparsable value
        (single_part, series_batch.single_key(single_sid), single.SerializeToString()),
        (batch_part, batch_key, batch_value),
    ])

    def hosts() -> list[str] | None:
        status, _, body = http("GET", worker + "/api/v1/series?match[]=announced_only")
        found = sorted(s["host"] for s in orjson.loads(body)["data"]) if status == 200 else []
        return found if len(found) == 2 else None

    assert wait_for(hosts, STORE_TIMEOUT_S, "both announced series listed") == ["batched", "single"]
    assert worker_counter(worker, "mf_worker_errors_total", reason="bad_series_key") == 1
    assert worker_counter(worker, "mf_worker_errors_total", reason="bad_series_info") == 1
    assert worker_counter(worker, "mf_worker_series_indexed_total") == 2


def test_tenant_field_is_honoured_when_another_series_has_invalid_utf8(stack: Stack) -> None:
    """One series with a non-UTF-8 label must not move the message's valid series into another tenant."""
    _, worker = stack.start_worker()
    now = int(time.time() * 1000) // 1000 * 1000
    ok = ({"__name__": "utf8_mixed", "x": "fine"}, np.array([now], dtype=np.int64), np.array([3.5]))
    broken = ({"__name__": "utf8_mixed", "x": "ZZZZ"}, np.array([now], dtype=np.int64), np.array([4.5]))
    body = write_request("acme", [ok, broken]).replace(b"ZZZZ", b"\xff\xfe\xfd\xfc")
    produce(stack.bootstrap, ingest_topic(stack), [body])
    wait_for(lambda: worker_counter(worker, "mf_worker_ingest_rejected_total", reason="invalid_utf8") >= 1, 60,
             "the invalid UTF-8 series is counted")

    def where() -> dict[str, list[dict[str, Any]]] | None:
        found = {t: query_raw(worker, "utf8_mixed", now / 1000 - 1, now / 1000 + 1, tenant=t)
                 for t in ("acme", "default")}
        return found if any(found.values()) else None

    found = wait_for(where, STORE_TIMEOUT_S, "the valid series stored under some tenant")
    assert found["default"] == [], "the valid series of tenant acme was stored under tenant default"
    assert [(r["metric"]["x"], r["values"]) for r in found["acme"]] == [("fine", [[now // 1000, "3.5"]])]


# --- (b) Go ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def go_producer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    go = shutil.which("go")
    if go is None:
        pytest.skip("`go` is not on PATH: the Go producer example (examples/go-producer) cannot be built")
    out = tmp_path_factory.mktemp("go") / "goproducer"
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")  # no VCS stamping: git may be absent or refuse the checkout
    started = time.monotonic()
    proc = subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_MODULE, env=env, capture_output=True,
                          text=True, timeout=GO_BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"go build failed:\n{proc.stdout}\n{proc.stderr}"
    print(f"go build of examples/go-producer took {time.monotonic() - started:.1f}s")
    yield out


def test_go_producer_points_become_queryable(stack: Stack, go_producer: Path) -> None:
    _, worker = stack.start_worker()
    start = base_ms() + 7
    n_series, n_points = 10, 100
    proc = subprocess.run(
        [str(go_producer), "-brokers", stack.bootstrap, "-topic", ingest_topic(stack), "-tenant", "gotenant",
         "-series", str(n_series), "-points", str(n_points), "-start-ms", str(start), "-interval-ms", "10000",
         "-batch", "25", "-max-points", "250", "-metric", "go_ingest"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (sent["topic"], sent["tenant"], sent["points"], sent["messages"]) == (
        ingest_topic(stack), "gotenant", n_series * n_points, 4)  # 4 chunks of 25 points × 10 series
    assert len(sent["series"]) == n_series

    expected = {}
    for s in sent["series"]:
        # The Go seriesid package and metricsflow agree on the id of live data too.
        assert s["series_id"] == str(series_id("gotenant", s["labels"])), s["labels"]
        ts, vals = np.array(s["timestamps_ms"], dtype=np.int64), np.array(s["values"], dtype=np.float64)
        i = int(s["labels"]["series"])
        np.testing.assert_array_equal(ts, start + np.arange(n_points, dtype=np.int64) * 10_000)
        np.testing.assert_array_equal(vals, i * 1000 + np.arange(n_points) + 0.1)  # the documented formula
        expected[s["labels"]["series"]] = (ts, vals)

    end = start + (n_points - 1) * 10_000
    result = wait_complete(worker, 'go_ingest{producer="go"}', start, end, n_series, n_series * n_points,
                           tenant="gotenant")
    assert_exact(result, expected, "series")
    assert all(set(r["metric"]) == {"__name__", "producer", "series"} for r in result)
    assert query_raw(worker, "go_ingest", start / 1000, end / 1000, tenant="default") == []

    # Packed fields and zstd-compressed Kafka batches take the same way.
    proc = subprocess.run(
        [str(go_producer), "-brokers", stack.bootstrap, "-topic", ingest_topic(stack), "-tenant", "gotenant",
         "-series", "2", "-points", "10", "-start-ms", str(start), "-packed", "-compression", "zstd",
         "-metric", "go_ingest_packed"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {s["labels"]["series"]: (np.array(s["timestamps_ms"], dtype=np.int64), np.array(s["values"]))
                for s in sent["series"]}
    result = wait_complete(worker, "go_ingest_packed", start, start + 9 * 10_000, 2, 20, tenant="gotenant")
    assert_exact(result, expected, "series")


# --- (c) kcat --------------------------------------------------------------------------------------

def test_kcat_file_becomes_queryable(stack: Stack, tmp_path: Path) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed (apt-get install kcat)")
    _, worker = stack.start_worker()
    base = base_ms()
    ts = base + np.arange(20, dtype=np.int64) * 15_000
    series = [({"__name__": "kcat_ingest", "host": h}, ts, np.arange(20) * 0.5 + k)
              for k, h in enumerate(["a", "b"])]
    body = write_request("kcat", series)
    assert body[:1] == b"\n"  # field 1's tag is 0x0a: never let kcat split the input on newlines (-l, stdin)
    path = tmp_path / "write_request.pb"
    path.write_bytes(body)
    # A file argument (without -l) is sent whole, as one message.
    proc = subprocess.run([kcat, "-P", "-b", stack.bootstrap, "-t", ingest_topic(stack), "-k", "kcat",
                           "-X", "acks=all", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = wait_complete(worker, "kcat_ingest", base, int(ts[-1]), 2, 40, tenant="kcat")
    assert_exact(result, {lab["host"]: (t, v) for lab, t, v in series}, "host")

