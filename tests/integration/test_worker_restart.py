"""A stopped worker comes back with all its data: from local RocksDB, or from the changelogs alone."""

from __future__ import annotations

import shutil
import time

import numpy as np
import orjson
import pytest

from tests.support import Stack, http, query_raw, wait_for

pytestmark = pytest.mark.integration
N_SERIES, N_POINTS = 50, 60


def write_points(stack: Stack, metric: str, base_ms: int) -> None:
    points = [{"metric_name": metric, "timestamp": base_ms + k * 1000, "value": float(i * 1000 + k),
               "tags": {"s": str(i)}} for i in range(N_SERIES) for k in range(N_POINTS)]
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": points}),
                           {"Content-Type": "application/json"})
    assert status == 202, body


def count(worker: str, metric: str, base_ms: int) -> int:
    result = query_raw(worker, metric, base_ms / 1000 - 1, base_ms / 1000 + N_POINTS + 1)
    return sum(len(r["values"]) for r in result)


def assert_all(worker: str, metric: str, base_ms: int) -> None:
    result = query_raw(worker, metric, base_ms / 1000 - 1, base_ms / 1000 + N_POINTS + 1)
    assert len(result) == N_SERIES
    for r in result:
        i = int(r["metric"]["s"])
        np.testing.assert_array_equal([float(v) for _, v in r["values"]], i * 1000 + np.arange(N_POINTS))


def test_graceful_restart_and_recovery_from_changelog(stack: Stack) -> None:
    stack.start_collector()
    # A long cut interval keeps one batch in the head (WAL) and one cut into chunks.
    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="3600")
    base = int(time.time() * 1000) - 600_000
    write_points(stack, "restart_chunked", base)
    wait_for(lambda: count(worker, "restart_chunked", base) == N_SERIES * N_POINTS, 60, "first batch visible")
    worker_proc.stop()  # graceful: SIGTERM

    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="0.5")
    assert_all(worker, "restart_chunked", base)  # restored from the local RocksDB + WAL
    write_points(stack, "restart_head", base)
    wait_for(lambda: count(worker, "restart_head", base) == N_SERIES * N_POINTS, 60, "second batch visible")
    worker_proc.stop()

    # Wipe the local state: everything must come back from the Kafka changelogs.
    shutil.rmtree(stack.workdir / "data")
    worker_proc, worker = stack.start_worker("w1")
    assert_all(worker, "restart_chunked", base)
    assert_all(worker, "restart_head", base)
