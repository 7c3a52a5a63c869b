"""Process accounting from /proc: CPU seconds (utime+stime, all threads), RSS, disk usage."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / CLK


def thread_cpu(pid: int) -> dict[int, float]:
    """utime + stime per thread of the process, in seconds, by thread id (the main thread's id is ``pid``)."""
    return {tid: user + system for tid, (_, user, system) in thread_user_system_by_tid(pid).items()}


def thread_user_system_by_tid(pid: int) -> dict[int, tuple[str, float, float]]:
    """(name, utime, stime) in seconds per live thread of the process, by thread id."""
    out: dict[int, tuple[str, float, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        out[int(tid)] = (head.split("(", 1)[1], int(fields[11]) / CLK, int(fields[12]) / CLK)
    return out


def thread_cpu_by_name(pid: int) -> dict[str, float]:
    """utime + stime of the process's live threads summed by thread name (``rocksdb:high`` are
    RocksDB's flush threads, ``rocksdb:low`` its compactions; Python's threads are ``python``)."""
    out: dict[str, float] = {}
    for name, user, system in thread_user_system_by_tid(pid).values():
        out[name] = out.get(name, 0.0) + user + system
    return out


def thread_cpu_by_kind(pid: int) -> dict[str, float]:
    """``thread_cpu_by_name`` with the names' numbering dropped, so a JVM's threads sum by what they are
    (``C2 CompilerThre`` the JIT, ``GC Thread`` and ``G1 …`` the collector, ``data-plane-kafk`` Kafka's
    request handlers and network threads)."""
    out: dict[str, float] = {}
    for name, cpu in thread_cpu_by_name(pid).items():
        kind = re.sub(r"[-#_ ]*\d+$", "", name) or name
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def proc_mem(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM", "VmRSS")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores, from /proc/stat:
    busy is user + nice + system + irq + softirq; steal is time the hypervisor ran something else."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLK, steal / CLK


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: proc_cpu(pid) for name, pid in pids.items()}


def idle_rates(pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """CPU-s per wall second of each process while nothing is sent (subtracted later)."""
    c0, t0 = cpu_of(pids), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = cpu_of(pids), time.perf_counter()
    return {k: (c1[k] - c0[k]) / (t1 - t0) for k in pids}


def wait_idle(pids: Iterable[int], max_wait: float = 180.0, window: float = 3.0, thresh: float = 0.05,
              extra: Callable[[], bool] | None = None) -> float:
    """Wait until the processes together use < thresh CPU-s/s over `window` s (and extra() holds)."""
    pids = list(pids)
    t0 = time.time()
    samples = [(time.time(), sum(proc_cpu(p) for p in pids))]
    while time.time() - t0 < max_wait:
        time.sleep(0.5)
        samples.append((time.time(), sum(proc_cpu(p) for p in pids)))
        old = [s for s in samples if samples[-1][0] - s[0] >= window]
        if old:
            t_a, c_a = old[-1]
            t_b, c_b = samples[-1]
            if (c_b - c_a) / (t_b - t_a) < thresh and (extra is None or extra()):
                return time.time() - t0
    return time.time() - t0


def du(path: str) -> int:
    """du -sb (apparent bytes)."""
    if not os.path.exists(path):
        return 0
    r = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


def children_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []
