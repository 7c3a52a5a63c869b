"""Freed memory stays in the process: a repeated allocation no longer page-faults its memory in."""

from __future__ import annotations

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
