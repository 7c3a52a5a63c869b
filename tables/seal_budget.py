"""How much of the worker's time seals may take: a share while points arrive, all that is left when none do."""

from __future__ import annotations

import time
from collections.abc import Callable

# Below this many points stored per second the worker counts as idle and seals are not budgeted
# (the slicer still gives a fifth of the loop away, and queries go first). Storing 5,000 points/s
# costs a worker well under 1 % of a core (~1.5 µs per point, perf/RESULTS.md "Seals counted: what a
# point costs the worker in the long run"), so consumption keeps up in what the slicer leaves it.
IDLE_POINTS_PER_S = 5_000


class RateMeter:
    """Events per second over the last one to two windows of ``window_s``."""

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._start = clock()
        self._previous = 0  # events in the window before the current one
        self._current = 0

    def add(self, n: int) -> None:
        self._roll()
        self._current += n

    def rate(self) -> float:
        self._roll()
        return (self._previous + self._current) / (self._window_s + self._clock() - self._start)

    def _roll(self) -> None:
        windows = int((self._clock() - self._start) // self._window_s)
        if windows:
            self._previous = self._current if windows == 1 else 0
            self._current = 0
            self._start += windows * self._window_s


class SealBudget:
    """Event-loop seconds seals may use: refilled at ``share`` of wall time, saved up to ``burst_s``.

    Every series of a partition crosses a block end at the same moment, so without a
    bound one cut sealed ~1,200 blocks per partition, 4-8 s each and one partition
    after another, while consumption got the pauses between slices only: freshness
    rose to 9-11 s (perf/RESULTS.md, "Freshness under steady load"). Sealing can wait:
    unsealed blocks are read from their segments. Seals beyond the budget are left
    pending for later.

    While ``idle()`` says no points are arriving there is nothing to protect: seals are
    neither bounded nor charged. Without that, the backlog of a backfill (every block of
    hours of data at once) sealed at ~30 blocks/s for many minutes after the data was in,
    and queries paid for reading segments meanwhile (perf/RESULTS.md, "Seals between cuts, …").
    """

    def __init__(self, share: float, burst_s: float, clock: Callable[[], float] = time.monotonic,
                 idle: Callable[[], bool] | None = None) -> None:
        self._share = share
        self._burst_s = burst_s
        self._clock = clock
        self._idle = idle
        self._tokens = burst_s
        self._at = clock()

    def available(self) -> bool:
        self._refill()
        return self._share <= 0 or self._tokens > 0 or self._is_idle()

    def spend(self, seconds: float) -> None:
        self._refill()
        if not self._is_idle():
            self._tokens -= seconds

    def _is_idle(self) -> bool:
        return self._idle is not None and self._idle()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst_s, self._tokens + (now - self._at) * self._share)
        self._at = now
