"""Values flowing between evaluation nodes, as numpy columns over the step grid.

An instant vector evaluated over T steps is a dense ``(n, T)`` value matrix with a
``present`` mask (Prometheus' per-step vectors, stacked), so one numpy call
handles every step. Range vectors (matrix selectors, subquery results) keep raw
samples flat with per-series offsets, the shape windowed functions need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PromQLExecutionError
from .labels import Labels
from .windows import common_grid

DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


@dataclass(slots=True)
class InstantVec:
    labels: list[Labels]
    values: np.ndarray  # (n, T) float64
    present: np.ndarray  # (n, T) bool
    # True when row order is meaningful for an instant query (sort, topk...).
    ordered: bool = False

    @classmethod
    def empty(cls, steps: int) -> InstantVec:
        return cls([], np.zeros((0, steps)), np.zeros((0, steps), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray | list[int]) -> InstantVec:
        rows = np.asarray(rows, dtype=np.intp)
        return InstantVec([self.labels[i] for i in rows], self.values[rows], self.present[rows], self.ordered)

    def compact(self) -> InstantVec:
        """Drop rows without any sample."""
        keep = self.present.any(axis=1)
        if keep.all():
            return self
        return self.take(np.flatnonzero(keep))


@dataclass(slots=True)
class Scalar:
    values: np.ndarray  # (T,)


@dataclass(slots=True)
class String:
    value: str


@dataclass(slots=True)
class RangeVec:
    """Raw samples of several series: series i owns ``ts[offsets[i]:offsets[i+1]]``."""

    labels: list[Labels]
    ts: np.ndarray  # int64, ascending within each series
    vals: np.ndarray  # float64
    offsets: np.ndarray  # (n+1,) intp
    # The timestamps every series shares (windows.common_grid), or None; False: not looked at yet.
    grid: np.ndarray | bool | None = field(default=False, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def common_grid(self) -> np.ndarray | None:
        """``windows.common_grid`` of the columns, found once (a range function searches them twice)."""
        if self.grid is False:
            self.grid = common_grid(self.ts, self.offsets)
        return self.grid  # type: ignore[return-value]


Value = InstantVec | Scalar | String | RangeVec


def merge_same_labels(vec: InstantVec) -> InstantVec:
    """Merge rows whose label sets became equal; overlapping samples are an error.

    Prometheus assembles range results per label set and fails when two samples
    land on the same label set and timestamp (``rangeEval``); rows that do not
    overlap in time simply become one series.
    """
    n = len(vec.labels)
    if n < 2:
        return vec
    first: dict[Labels, int] = {}
    dup = False
    for i, lb in enumerate(vec.labels):
        if lb in first:
            dup = True
            break
        first[lb] = i
    if not dup:
        return vec
    groups: dict[Labels, list[int]] = {}
    for i, lb in enumerate(vec.labels):
        groups.setdefault(lb, []).append(i)
    out_labels: list[Labels] = []
    out_vals = np.zeros((len(groups), vec.values.shape[1]))
    out_pres = np.zeros((len(groups), vec.values.shape[1]), dtype=bool)
    for g, (lb, rows) in enumerate(groups.items()):
        out_labels.append(lb)
        if len(rows) == 1:
            out_vals[g] = vec.values[rows[0]]
            out_pres[g] = vec.present[rows[0]]
            continue
        pres = vec.present[rows]
        if (pres.sum(axis=0) > 1).any():
            raise PromQLExecutionError(DUPLICATE_LABELSET)
        which = np.argmax(pres, axis=0)
        out_vals[g] = vec.values[np.asarray(rows)[which], np.arange(pres.shape[1])]
        out_pres[g] = pres.any(axis=0)
    return InstantVec(out_labels, out_vals, out_pres, vec.ordered)


def check_unique(labels: list[Labels]) -> None:
    if len(set(labels)) != len(labels):
        raise PromQLExecutionError(DUPLICATE_LABELSET)
