"""Read a Prometheus text exposition page into {sample name with labels: value}."""

from __future__ import annotations

import time
import urllib.request


def scrape(url: str, timeout: float = 10.0) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        txt = r.read().decode()
    out: dict[str, float] = {}
    for line in txt.splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def scrape_patiently(url: str, timeout: float, pause_s: float, tries: int = 20) -> dict[str, float]:
    """``scrape``, tried again after ``pause_s`` while it fails: an ingesting worker's event loop can
    stall for tens of seconds (cuts, a full producer buffer), which must not fail a benchmark run."""
    for attempt in range(tries):
        try:
            return scrape(url, timeout=timeout)
        except (OSError, TimeoutError):
            if attempt == tries - 1:
                raise
            time.sleep(pause_s)
    raise ValueError("tries must be at least 1")


def total(samples: dict[str, float], name: str) -> float:
    """Sum of every sample of metric `name` (all label sets)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def hist_quantile(samples: dict[str, float], name: str, q: float) -> float | None:
    """Quantile from a histogram's cumulative buckets (upper bound of the bucket, like Prometheus)."""
    buckets: dict[float, float] = {}
    for k, v in samples.items():
        if k.startswith(name + "_bucket{"):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            b = float("inf") if le == "+Inf" else float(le)
            buckets[b] = buckets.get(b, 0.0) + v
    if not buckets:
        return None
    items = sorted(buckets.items())
    n = items[-1][1]
    if n == 0:
        return None
    for le, c in items:
        if c >= q * n:
            return le
    return items[-1][0]
