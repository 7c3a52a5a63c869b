"""A mergeable t-digest on numpy arrays (Dunning's merging digest, scale function k1).

Centroids are (mean, weight) columns. Building and merging are one sort plus a
vectorised cluster assignment, so a window of thousands of observations costs
microseconds, and merging 60 one-minute digests costs the same as building one.
Quantiles interpolate between centroid means; the tails keep singletons, which
is what keeps p99/p999 accurate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_COMPRESSION = 200.0
_F64 = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class Digest:
    means: np.ndarray  # float64, sorted
    weights: np.ndarray  # float64, > 0
    vmin: float
    vmax: float

    @property
    def count(self) -> float:
        return float(self.weights.sum())

    def to_bytes(self) -> bytes:
        head = np.array([self.means.size, self.vmin, self.vmax], dtype=_F64).tobytes()
        return head + self.means.astype(_F64).tobytes() + self.weights.astype(_F64).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Digest:
        n, vmin, vmax = np.frombuffer(data[:24], dtype=_F64)
        n = int(n)
        body = np.frombuffer(data[24:24 + 16 * n], dtype=_F64)
        if body.size != 2 * n:
            raise ValueError("truncated digest")
        return cls(body[:n].copy(), body[n:].copy(), float(vmin), float(vmax))

    def quantile(self, q: float) -> float:
        if self.means.size == 0:
            return float("nan")
        if self.means.size == 1:
            return float(self.means[0])
        total = self.weights.sum()
        # Each centroid's mass sits around its centre: cumulative weight at centres.
        centres = np.cumsum(self.weights) - self.weights / 2
        rank = q * total
        if rank <= centres[0]:
            return float(np.interp(rank, [0, centres[0]], [self.vmin, self.means[0]]))
        if rank >= centres[-1]:
            return float(np.interp(rank, [centres[-1], total], [self.means[-1], self.vmax]))
        return float(np.interp(rank, centres, self.means))

    def rank(self, x: float) -> float:
        """Fraction of the mass below x (for accuracy checks)."""
        total = self.weights.sum()
        centres = np.cumsum(self.weights) - self.weights / 2
        return float(np.interp(x, np.concatenate([[self.vmin], self.means, [self.vmax]]),
                               np.concatenate([[0], centres, [total]])) / total)


def _compress(means: np.ndarray, weights: np.ndarray, compression: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(means, kind="stable")
    means, weights = means[order], weights[order]
    total = weights.sum()
    q_hi = np.cumsum(weights) / total
    q_lo = q_hi - weights / total
    # k1 scale: clusters are narrow near q=0 and q=1. A centroid starts a new cluster
    # whenever the k-index of its left edge moves to a new integer.
    k = (compression / (2 * np.pi)) * np.arcsin(np.clip(2 * (q_lo + q_hi) / 2 - 1, -1, 1))
    cluster = np.floor(k - k[0]).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], cluster[1:] != cluster[:-1]]))
    w = np.add.reduceat(weights, starts)
    m = np.add.reduceat(means * weights, starts) / w
    return m, w


def build(values: np.ndarray, compression: float = DEFAULT_COMPRESSION) -> Digest:
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return Digest(np.empty(0), np.empty(0), float("nan"), float("nan"))
    m, w = _compress(vals, np.ones(vals.size), compression)
    return Digest(m, w, float(vals.min()), float(vals.max()))


def merge(digests: list[Digest], compression: float = DEFAULT_COMPRESSION) -> Digest:
    parts = [d for d in digests if d.means.size]
    if not parts:
        return Digest(np.empty(0), np.empty(0), float("nan"), float("nan"))
    m, w = _compress(np.concatenate([d.means for d in parts]), np.concatenate([d.weights for d in parts]),
                     compression)
    return Digest(m, w, min(d.vmin for d in parts), max(d.vmax for d in parts))
