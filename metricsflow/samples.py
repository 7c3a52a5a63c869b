"""Small vectorised helpers over (timestamps, values) columns of one series."""

from __future__ import annotations

import numpy as np


def merge(old_ts: np.ndarray, old_vals: np.ndarray, new_ts: np.ndarray,
          new_vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of two sorted series; where both have a timestamp, the new value wins.

    This is what makes replays idempotent: merging the same samples again
    yields the same columns.
    """
    if old_ts.size == 0:
        return new_ts, new_vals
    if new_ts.size == 0:
        return old_ts, old_vals
    if old_ts[-1] < new_ts[0]:
        return np.concatenate([old_ts, new_ts]), np.concatenate([old_vals, new_vals])
    ts = np.concatenate([old_ts, new_ts])
    vals = np.concatenate([old_vals, new_vals])
    order = np.argsort(ts, kind="stable")  # stable: for equal ts the new sample stays last
    ts, vals = ts[order], vals[order]
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    return ts[last], vals[last]


def sort_and_dedup(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order one series by time; for a repeated timestamp the last value sent wins."""
    if ts.size < 2 or bool((ts[1:] > ts[:-1]).all()):
        return ts, values
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.ones(ts.size, dtype=bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], values[keep]


def clip(ts: np.ndarray, vals: np.ndarray, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples with start_ms <= t <= end_ms; the arrays themselves when all of them are inside."""
    if ts.size and ts[0] >= start_ms and ts[-1] <= end_ms:
        return ts, vals  # a query's reads mostly lie inside its windows: no searches
    a, b = np.searchsorted(ts, start_ms, "left"), np.searchsorted(ts, end_ms, "right")
    return ts[a:b], vals[a:b]
