"""Read a Prometheus text exposition page into {sample name with labels: value}."""

from __future__ import annotations

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
