"""A fixed piece of single-core work, timed: how fast this machine is right now.

    python3 perf/lib/speed_probe.py

Run before and after a benchmark; when the two differ much, or differ from other runs',
the machine's speed changed and figures from different times do not compare.
"""

from __future__ import annotations

import hashlib
import time


def probe_s() -> float:
    t = time.perf_counter()
    x = 0
    for i in range(3_000_000):
        x += i * i
    h = hashlib.sha256()
    for _ in range(200):
        h.update(b"x" * 100_000)
    return time.perf_counter() - t


if __name__ == "__main__":
    print(f"speed probe {probe_s():.3f} s")
