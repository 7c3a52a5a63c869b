"""Bad input gets a clear, counted error; the valid point in the same request is still stored."""

from __future__ import annotations

import time

import grpc
import orjson
import pytest

from metricsflow.pb import metricsflow_pb2 as pb
from tests.support import Stack, http, query_raw, wait_for

pytestmark = pytest.mark.integration
JSON = {"Content-Type": "application/json"}


def valid(metric: str, now: int) -> dict:
    return {"metric_name": metric, "timestamp": now, "value": 7.25, "tags": {"ok": "yes"}}


def assert_stored(worker: str, metric: str, now: int) -> None:
    result = wait_for(lambda: query_raw(worker, metric, now / 1000 - 5, now / 1000 + 5), 60, f"{metric} stored")
    assert [r["values"] for r in result] == [[[now / 1000 if now % 1000 else now // 1000, "7.25"]]]


def test_bad_input_is_refused_with_reasons_and_valid_points_survive(stack: Stack) -> None:
    stack.start_collector(MF_MAX_LABEL_VALUE_BYTES="4096")
    _, worker = stack.start_worker()
    url = stack.collector_url + "/v1/metrics"
    now = int(time.time() * 1000)

    # Whole-body errors: 400 with a reason, nothing stored.
    for body, ctype, reason in [
        (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", "bad_protobuf"),
        (b"", "application/json", "empty_body"),
        (b"{not json", "application/json", "bad_json"),
        (b'{"metrics": 3}', "application/json", "bad_json"),
    ]:
        status, _, resp = http("POST", url, body, {"Content-Type": ctype})
        doc = orjson.loads(resp)
        assert status == 400 and doc["reason"] == reason and doc["error"], (reason, doc)
    status, _, _ = http("POST", url, b"x", {"Content-Type": "text/plain"})
    assert status == 415

    cases = {
        "invalid_metric_name": {"metric_name": "1-bad name", "timestamp": now, "value": 1},
        "invalid_label_name": {"metric_name": "bad_label", "timestamp": now, "value": 1, "tags": {"a-b": "x"}},
        "too_many_labels": {"metric_name": "many", "timestamp": now, "value": 1,
                            "tags": {f"l{i}": "v" for i in range(31)}},
        "label_value_too_long": {"metric_name": "big", "timestamp": now, "value": 1, "tags": {"v": "x" * 1_000_000}},
        "bad_timestamp": {"metric_name": "nan_ts", "timestamp": "NaN", "value": 1},
        "too_far_in_future": {"metric_name": "future", "timestamp": now + 86_400_000, "value": 1},
        "too_old": {"metric_name": "old", "timestamp": now - 30 * 86_400_000, "value": 1},
        "bad_value": {"metric_name": "strval", "timestamp": now, "value": "abc"},
    }
    for reason, point in cases.items():
        metric = f"ok_after_{reason}"
        status, _, resp = http("POST", url, orjson.dumps({"metrics": [point, valid(metric, now)]}), JSON)
        doc = orjson.loads(resp)
        assert status == 202, (reason, doc)
        assert (doc["accepted"], doc["rejected"]) == (1, 1), (reason, doc)
        assert doc["rejections"][0]["reason"] == reason, doc
        assert len(resp) < 10_000, "a huge label value must not be echoed back"
        assert_stored(worker, metric, now)

    # Infinite timestamp written as a JSON number.
    body = b'{"metrics": [{"metric_name": "inf_ts", "timestamp": 1e999, "value": 1}]}'
    status, _, resp = http("POST", url, body, JSON)
    doc = orjson.loads(resp)
    assert status == 400, doc
    assert (doc.get("reason") or doc["rejections"][0]["reason"]) in ("bad_timestamp", "bad_json"), doc

    # NaN is a value like any other.
    status, _, resp = http("POST", url, orjson.dumps({"metrics": [
        {"metric_name": "nan_value", "timestamp": now, "value": "NaN"}]}), JSON)
    assert status == 202
    got = wait_for(lambda: query_raw(worker, "nan_value", now / 1000 - 5, now / 1000 + 5), 60, "NaN value stored")
    assert got[0]["values"][0][1] == "NaN"

    # gRPC: malformed → INVALID_ARGUMENT; a bad series next to a good one → partial success.
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        write = channel.unary_unary("/metricsflow.v1.Ingest/Write", request_serializer=lambda b: b,
                                    response_deserializer=pb.WriteResponse.FromString)
        with pytest.raises(grpc.RpcError) as err:
            write(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        req = pb.WriteRequest(series=[
            pb.Series(labels=[pb.Label(name="__name__", value="bad name")], timestamps_ms=[now], values=[1.0]),
            pb.Series(labels=[pb.Label(name="__name__", value="grpc_ok"), pb.Label(name="ok", value="yes")],
                      timestamps_ms=[now], values=[7.25]),
        ])
        resp = write(req.SerializeToString(), timeout=10)
        assert (resp.accepted, resp.rejected, resp.rejections[0].reason) == (1, 1, "invalid_metric_name")
    assert_stored(worker, "grpc_ok", now)

    # Every rejection was counted under its reason.
    _, _, text = http("GET", stack.collector_url + "/metrics")
    for reason in cases:
        assert f'reason="{reason}"' in text.decode(), reason
