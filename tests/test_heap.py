"""Freed memory stays in the process: a repeated allocation no longer page-faults its memory in."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys

import pytest

# Allocates what a query does (arrays of a few MB, then many small ones) and frees it, 30 times;
# prints the minor page faults of the last 20 rounds.
PROBE = """
import resource, sys
import numpy as np
from metricsflow.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def round_():
    big = [np.ones(216_000) for _ in range(4)]
    small = [np.ones(2_160) for _ in range(400)]
    return sum(len(a) for a in big + small)
for _ in range(10):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    return env | extra


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60,
                         env=_clean_env(), check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_kept_memory_is_not_faulted_in_again() -> None:
    plain, kept = _faults("plain"), _faults("keep")
    assert plain > 20 * 400  # every round faults its big arrays in again (~1,700 pages)
    assert kept < plain / 20


def test_malloc_settings_of_the_environment_are_left_alone() -> None:
    out = subprocess.run([sys.executable, "-c", "from metricsflow.heap import keep_freed_memory as k; print(k())"],
                         capture_output=True, text=True, timeout=60, env=_clean_env(MALLOC_TRIM_THRESHOLD_="1048576"),
                         check=True)
    assert out.stdout.strip() == "False"


# A reference cycle alive at a freeze, then dropped: frozen, only the next freeze_long_lived frees it.
FREEZE_PROBE = """
import gc, weakref
from metricsflow.heap import freeze_long_lived
class Node:
    pass
a = Node(); a.me = a
alive = weakref.ref(a)
freeze_long_lived()
frozen = gc.get_freeze_count()
del a
gc.collect()
after_collect = alive() is not None
freeze_long_lived()
print(frozen, after_collect, alive() is not None)
"""


def test_frozen_objects_leave_full_collections_until_the_next_freeze() -> None:
    out = subprocess.run([sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, timeout=60,
                         check=True)
    frozen, after_collect, after_refreeze = out.stdout.split()
    assert int(frozen) > 1000  # the interpreter's and numpy's objects
    assert after_collect == "True"  # out of gc.collect()'s reach while frozen
    assert after_refreeze == "False"  # unfrozen and collected by the next call


# The gauges read the count taken at the freeze: gc.get_freeze_count walks the frozen list on every call.
FROZEN_GAUGE_PROBE = """
import gc
from metricsflow.heap import freeze_long_lived, frozen_objects
from agents import metrics as worker
from metricsflow.collector import metrics as collector
before = frozen_objects()
keep = [[i] for i in range(50_000)]
freeze_long_lived()
counted = gc.get_freeze_count()
def walk():
    raise AssertionError("a scrape walked the frozen objects")
gc.get_freeze_count = walk
values = [m.collect()[0].samples[0].value for m in (worker.GC_FROZEN, collector.GC_FROZEN)]
print(before, counted, frozen_objects(), *values)
"""


def test_the_frozen_gauges_read_the_count_taken_at_the_freeze() -> None:
    out = subprocess.run([sys.executable, "-c", FROZEN_GAUGE_PROBE], capture_output=True, text=True, timeout=60,
                         check=True)
    before, counted, cached, worker, collector = (int(float(v)) for v in out.stdout.split())
    assert before == 0  # nothing frozen yet
    assert counted > 50_000  # the lists above and the libraries' objects
    assert cached == worker == collector == counted


def test_every_collection_is_timed_with_its_generation() -> None:
    from metricsflow.heap import time_collections

    seen: list[tuple[int, float]] = []
    time_collections(lambda generation, seconds: seen.append((generation, seconds)))
    gc.disable()  # only the two collections below
    try:
        gc.collect(1)
        gc.collect()
    finally:
        gc.enable()
        gc.callbacks.pop()
    assert [g for g, _ in seen] == [1, 2]
    assert all(0 <= s < 10 for _, s in seen)
