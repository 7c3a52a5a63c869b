"""The TSBS "cpu-only"-like workload: hosts × 10 cpu gauges × 10 host tags, 10 s apart.

Values are a random walk in [0, 100] with N(0, 1) steps, rounded to 2 decimals,
as in TSBS and ../shared/anchors/gen.py, so figures compare with the anchors.
Everything is a pure function of the seed.
"""

from __future__ import annotations

import numpy as np

METRICS = ("user", "system", "idle", "nice", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
REGIONS = {
    "us-east-1": ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"),
    "us-west-1": ("us-west-1a", "us-west-1b"),
    "us-west-2": ("us-west-2a", "us-west-2b", "us-west-2c"),
    "eu-west-1": ("eu-west-1a", "eu-west-1b", "eu-west-1c"),
    "eu-central-1": ("eu-central-1a", "eu-central-1b"),
    "ap-southeast-1": ("ap-southeast-1a", "ap-southeast-1b"),
    "ap-southeast-2": ("ap-southeast-2a", "ap-southeast-2b"),
    "ap-northeast-1": ("ap-northeast-1a", "ap-northeast-1c"),
    "sa-east-1": ("sa-east-1a", "sa-east-1b", "sa-east-1c"),
}
INTERVAL_MS = 10_000


def host_tags(h: int, rng: np.random.Generator) -> dict[str, str]:
    region = list(REGIONS)[int(rng.integers(len(REGIONS)))]
    dcs = REGIONS[region]
    return {
        "hostname": f"host_{h}",
        "region": region,
        "datacenter": dcs[int(rng.integers(len(dcs)))],
        "rack": str(int(rng.integers(100))),
        "os": ("Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10")[int(rng.integers(3))],
        "arch": ("x64", "x86")[int(rng.integers(2))],
        "team": ("SF", "NYC", "LON", "CHI")[int(rng.integers(4))],
        "service": str(int(rng.integers(20))),
        "service_version": str(int(rng.integers(2))),
        "service_environment": ("production", "staging", "test")[int(rng.integers(3))],
    }


def series_labels(hosts: int, seed: int = 42) -> list[dict[str, str]]:
    """Label sets of all series, host-major: host 0's 10 metrics first."""
    rng = np.random.default_rng(seed)
    out = []
    for h in range(hosts):
        tags = host_tags(h, rng)
        for m in METRICS:
            out.append({"__name__": f"cpu_usage_{m}", **tags})
    return out


class RandomWalk:
    """Successive rounds of values for every series (one row per round)."""

    def __init__(self, n_series: int, seed: int = 42) -> None:
        self._rng = np.random.default_rng(seed + 1)
        self._state = self._rng.uniform(0, 100, n_series)

    def rounds(self, n: int) -> np.ndarray:
        steps = self._rng.normal(0.0, 1.0, (n, self._state.size))
        walk = np.empty_like(steps)
        state = self._state
        for i in range(n):  # per round, vectorised over series; clamping makes cumsum wrong
            state = np.clip(state + steps[i], 0.0, 100.0)
            walk[i] = state
        self._state = state
        return np.round(walk, 2)
