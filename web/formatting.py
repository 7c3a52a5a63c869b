"""Prometheus API JSON shapes: sample values as strings, timestamps as unix seconds."""

from __future__ import annotations

import math

import numpy as np


def format_value(v: float) -> str:
    """Like Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return np.format_float_positional(v, trim="-")


def format_ts(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def matrix_series(labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> dict[str, object]:
    return {"metric": labels,
            "values": [[format_ts(t), format_value(v)] for t, v in zip(ts.tolist(), vals.tolist(), strict=True)]}
