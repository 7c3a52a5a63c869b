"""Prometheus API JSON shapes for raw samples, with the engine's own number formatting."""

from __future__ import annotations

import numpy as np

from metricsflow.promql.format import format_timestamps, format_values


def matrix_series(labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> dict[str, object]:
    return {"metric": labels, "values": [list(p) for p in zip(format_timestamps(ts), format_values(vals), strict=True)]}
