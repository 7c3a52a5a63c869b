"""One place that turns many per-point refusals into a few ``Rejection``s.

A bad client can send 100k bad lines; the response should say which reasons
and how many points, with a handful of examples, not 100k strings.
"""

from __future__ import annotations

from metricsflow.model import Rejection

MAX_EXAMPLES = 5  # details kept per reason


class RejectionLog:
    """Counts refused points per reason and keeps the first few details."""

    __slots__ = ("_details", "_points")

    def __init__(self) -> None:
        self._points: dict[str, int] = {}
        self._details: dict[str, list[str]] = {}

    def add(self, reason: str, detail: str, points: int = 1) -> None:
        self._points[reason] = self._points.get(reason, 0) + points
        kept = self._details.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES and detail not in kept:
            kept.append(detail)

    def __bool__(self) -> bool:
        return bool(self._points)

    def to_list(self) -> list[Rejection]:
        return [Rejection(reason, "; ".join(self._details[reason]), n) for reason, n in self._points.items()]


def merged(rejections: list[Rejection]) -> list[Rejection]:
    """Fold rejections with the same reason into one (points added, details capped)."""
    if len(rejections) < 2:
        return rejections
    log = RejectionLog()
    for r in rejections:
        log.add(r.reason, r.detail, r.points)
    return log.to_list()
