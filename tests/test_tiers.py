"""The one tier policy (web/tiers.py) for sample reads and PromQL queries."""

from __future__ import annotations

import pytest

from metricsflow.errors import InvalidInput
from web.tiers import DAY_MS, choose_tier

NOW = 1_800_000_000_000
RET = {"raw": 15 * DAY_MS, "1m": 90 * DAY_MS, "1h": 0}
H = 3_600_000


@pytest.mark.parametrize(("start_ago", "span", "step", "tier"), [
    (2 * H, 2 * H, None, "raw"),                 # recent, short: raw samples
    (2 * DAY_MS, 2 * DAY_MS, None, "1m"),        # sample read past a day
    (40 * DAY_MS, 40 * DAY_MS, None, "1h"),      # sample read past 30 days
    (20 * DAY_MS, 2 * H, None, "1m"),            # raw retention passed
    (100 * DAY_MS, 2 * H, None, "1h"),           # 1m retention passed
    (2 * DAY_MS, 2 * DAY_MS, 60_000, "raw"),     # a query at a fine step stays exact
    (3 * DAY_MS, 3 * DAY_MS, 300_000, "1m"),     # coarse step over > 2 days
    (10 * DAY_MS, 10 * DAY_MS, H, "1h"),         # 1 h step over > 7 days
    (10 * DAY_MS, 10 * DAY_MS, 300_000, "1m"),
    (20 * DAY_MS, 2 * H, 15_000, "1m"),          # raw retention passed, whatever the step
    (100 * DAY_MS, 2 * H, 15_000, "1h"),
])
def test_auto(start_ago: int, span: int, step: int | None, tier: str) -> None:
    start = NOW - start_ago
    assert choose_tier("auto", start, start + span, NOW, RET, step) == tier


def test_forced_and_invalid() -> None:
    assert choose_tier("1h", NOW - H, NOW, NOW, RET) == "1h"
    assert choose_tier("raw", NOW - 40 * DAY_MS, NOW, NOW, RET, H) == "raw"
    with pytest.raises(InvalidInput, match="tier"):
        choose_tier("5m", NOW - H, NOW, NOW, RET)


def test_no_retention_means_forever() -> None:
    ret = {"raw": 0, "1m": 0, "1h": 0}
    assert choose_tier("auto", NOW - 400 * DAY_MS, NOW - 400 * DAY_MS + H, NOW, ret, 15_000) == "raw"
