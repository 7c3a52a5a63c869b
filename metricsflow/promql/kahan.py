"""Vectorised Kahan-Neumaier steps, the summation Prometheus uses (util/kahansum).

Matching its summation order and compensation keeps results such as
``sum(1e100, 2, -1e100, 8) == 10`` identical to Prometheus'.
"""

from __future__ import annotations

import numpy as np


def inc(x: np.ndarray, s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Neumaier step per element: returns the new (sum, compensation)."""
    with np.errstate(invalid="ignore", over="ignore"):
        t = s + x
        big = np.abs(s) >= np.abs(x)
        c2 = np.where(big, c + ((s - t) + x), c + ((x - t) + s))
        c2 = np.where(np.isinf(t), 0.0, c2)
    return t, c2
