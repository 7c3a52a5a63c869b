"""Which storage tier answers a read, and how a rollup window becomes one value."""

from __future__ import annotations

from metricsflow import rollup
from metricsflow.errors import InvalidInput

ROLLUP_AGGS = rollup.WINDOW_AGGS
TIERS = ("raw", "1m", "1h")
DAY_MS = 86_400_000


def choose_tier(requested: str, start_ms: int, end_ms: int, now_ms: int, retention: dict[str, int]) -> str:
    """Raw for short recent ranges; 1m past a day or past raw retention; 1h past 30 days or 1m retention."""
    if requested in TIERS:
        return requested
    if requested != "auto":
        raise InvalidInput("bad_data", f'invalid parameter "tier": {requested!r}; one of auto, raw, 1m, 1h')
    if retention["1m"] and start_ms < now_ms - retention["1m"]:
        return "1h"
    span = end_ms - start_ms
    if span > 30 * DAY_MS:
        return "1h"
    if (retention["raw"] and start_ms < now_ms - retention["raw"]) or span > DAY_MS:
        return "1m"
    return "raw"


def choose_query_tier(requested: str, start_ms: int, end_ms: int, step_ms: int, now_ms: int,
                      retention: dict[str, int]) -> str:
    """The tier a PromQL query reads: raw unless the range is old or long and the step coarse.

    Data older than raw retention only exists in the rollups; a 30-day dashboard at a
    1 h step reads 1 h windows (720 per series) instead of 260,000 raw samples.
    """
    if requested in TIERS:
        return requested
    if requested != "auto":
        raise InvalidInput("bad_data", f'invalid parameter "tier": {requested!r}; one of auto, raw, 1m, 1h')
    if retention["1m"] and start_ms < now_ms - retention["1m"]:
        return "1h"
    if retention["raw"] and start_ms < now_ms - retention["raw"]:
        return "1m"
    span = end_ms - start_ms
    if step_ms >= 3_600_000 and span > 7 * DAY_MS:
        return "1h"
    if step_ms >= 300_000 and span > 2 * DAY_MS:
        return "1m"
    return "raw"
