"""Every HTTP ingest protocol ends in the same stored series."""

from __future__ import annotations

import time

import numpy as np
import pytest

from metricsflow.ingest.otlp import encode_otlp
from metricsflow.ingest.remote_write import encode_remote_write
from metricsflow.model import STALE_NAN, SeriesSamples
from tests.support import Stack, http, query_raw, wait_for

pytestmark = pytest.mark.integration


def test_remote_write_influx_and_otlp_are_stored(stack: Stack) -> None:
    stack.start_collector(MF_MAX_BODY_BYTES=str(1 << 20))
    _, worker = stack.start_worker()
    now = int(time.time() * 1000) // 1000 * 1000
    url = stack.collector_url

    ts = np.arange(now - 50_000, now, 10_000, dtype=np.int64)
    rw = [SeriesSamples({"__name__": "rw_metric", "job": "node", "instance": f"i{i}"}, ts,
                        np.arange(ts.size, dtype=np.float64) + i) for i in range(3)]
    body = encode_remote_write(rw)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}
    assert http("POST", url + "/api/v1/write", body, headers)[0] == 204
    assert http("POST", url + "/api/v1/write", b"not snappy", headers)[0] == 400
    v2 = {**headers, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}
    assert http("POST", url + "/api/v1/write", body, v2)[0] == 415
    stale = [SeriesSamples({"__name__": "rw_stale"}, ts[-1:], np.array([STALE_NAN]))]
    assert http("POST", url + "/api/v1/write", encode_remote_write(stale), headers)[0] == 204

    lines = (f'weather,location=us-midwest,season=summer temperature=82,humidity=71i {now * 1_000_000}\n'
             f'weather,location=us\\ east temperature=75.5 {now * 1_000_000}\n').encode()
    assert http("POST", url + "/api/v2/write?precision=ns", lines)[0] == 204
    assert http("POST", url + "/write?precision=s", f"legacy value=1 {now // 1000}\n".encode())[0] == 204
    assert http("POST", url + "/api/v2/write", b"weather,location=x temperature=\n")[0] == 400

    otlp = encode_otlp([SeriesSamples({"__name__": "otel_gauge", "host": "a"}, ts[-1:], np.array([3.5]))],
                       {"service.name": "checkout"})
    status, _, _ = http("POST", url + "/otlp/v1/metrics", otlp, {"Content-Type": "application/x-protobuf"})
    assert status == 200

    status, _, resp = http("POST", url + "/v1/metrics", b"x" * (2 << 20), {"Content-Type": "application/json"})
    assert status == 413, resp

    start, end = (now - 120_000) / 1000, (now + 1000) / 1000
    got = wait_for(lambda: len(r := query_raw(worker, "rw_metric", start, end)) == 3 and r, 60, "remote_write series")
    for r in got:
        i = int(r["metric"]["instance"][1:])
        assert [float(v) for _, v in r["values"]] == list(np.arange(ts.size, dtype=float) + i)
    stale_got = wait_for(lambda: query_raw(worker, "rw_stale", start, end), 60, "stale marker stored")
    assert stale_got[0]["values"][0][1] == "NaN"
    temps = wait_for(lambda: len(r := query_raw(worker, "weather_temperature", start, end)) == 2 and r, 60, "influx")
    assert sorted(x["metric"]["location"] for x in temps) == ["us east", "us-midwest"]
    hum = wait_for(lambda: query_raw(worker, "weather_humidity", start, end), 60, "influx integer field")
    assert hum[0]["values"] == [[now // 1000, "71"]]
    assert wait_for(lambda: query_raw(worker, "legacy_value", start, end), 60, "influx v1 /write")
    otel = wait_for(lambda: query_raw(worker, '{__name__=~"otel_gauge.*"}', start, end), 60, "otlp gauge")
    assert otel[0]["metric"]["job"] == "checkout" and otel[0]["values"][0][1] == "3.5"
