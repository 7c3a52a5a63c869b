"""Which storage tier answers a read, and how a rollup window becomes one value."""

from __future__ import annotations

from metricsflow import rollup
from metricsflow.errors import InvalidInput

ROLLUP_AGGS = rollup.WINDOW_AGGS
TIERS = ("raw", "1m", "1h")
DAY_MS = 86_400_000


def choose_tier(requested: str, start_ms: int, end_ms: int, now_ms: int, retention: dict[str, int],
                step_ms: int | None = None) -> str:
    """The tier a read uses: ``requested`` unless it is ``auto``.

    Data older than a tier's retention only exists in the next coarser one, so that
    decides first (1m retention passed → 1h; raw retention passed → 1m, or 1h for
    a sample read over > 30 days). Then the span: a PromQL query (``step_ms``
    given) leaves raw only when the step is coarse too (≥ 5 min over > 2 days → 1m;
    ≥ 1 h over > 7 days → 1h), because a rollup window answers a step exactly only
    when it is no wider than the step. A read of the samples themselves
    (``/v1/query`` without a step) returns 1m windows past a day and 1h windows
    past 30 days, so an unbounded read stays bounded.
    """
    if requested in TIERS:
        return requested
    if requested != "auto":
        raise InvalidInput("bad_data", f'invalid parameter "tier": {requested!r}; one of auto, raw, 1m, 1h')
    if retention["1m"] and start_ms < now_ms - retention["1m"]:
        return "1h"
    span = end_ms - start_ms
    raw_expired = bool(retention["raw"]) and start_ms < now_ms - retention["raw"]
    if step_ms is None:
        return "1h" if span > 30 * DAY_MS else "1m" if raw_expired or span > DAY_MS else "raw"
    if raw_expired:
        return "1m"
    if step_ms >= 3_600_000 and span > 7 * DAY_MS:
        return "1h"
    if step_ms >= 300_000 and span > 2 * DAY_MS:
        return "1m"
    return "raw"
