"""The local broker's JIT compiler threads run at the lowest priority (metricsflow/stack/kafka.py)."""

from __future__ import annotations

import os

import pytest

from metricsflow.stack import kafka
from metricsflow.stack.process import read_pid


def _threads(pid: int) -> dict[str, list[int]]:
    """Nice values of the process's threads, by thread name."""
    out: dict[str, list[int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        out.setdefault(head.split("(", 1)[1], []).append(int(rest.split()[16]))  # field 19, nice
    return out


def test_compiler_threads_are_niced_and_request_threads_are_not(kafka_node: kafka.KafkaNode | None) -> None:
    if kafka_node is None:
        pytest.skip("MF_TEST_KAFKA: the broker was started elsewhere")
    pid = read_pid(kafka_node.pid_file)
    assert pid is not None
    threads = _threads(pid)
    compilers = {name: nices for name, nices in threads.items() if "CompilerThre" in name}
    assert compilers, f"no JIT compiler thread among {sorted(threads)}"
    assert all(n == 19 for nices in compilers.values() for n in nices), compilers
    handlers = [n for name, nices in threads.items() if name.startswith("data-plane-kafk") for n in nices]
    assert handlers and all(n == 0 for n in handlers), threads
