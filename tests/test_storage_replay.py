"""The retention guard of the mf.points replay: the records of the head must outlive the cut."""

from __future__ import annotations

import pytest

from metricsflow.config import Settings
from tables.replay import MIN_RETENTION_CUT_INTERVALS, RetentionTooShort, check_points_retention


@pytest.mark.parametrize(("retention_ms", "cut_s", "ok"), [
    (7 * 86_400_000, 300.0, True),  # the defaults
    (MIN_RETENTION_CUT_INTERVALS * 300_000, 300.0, True),
    (MIN_RETENTION_CUT_INTERVALS * 300_000 - 1, 300.0, False),
    (600_000, 300.0, False),  # two cut intervals: a restart could find the head's records deleted
    (600_000, 0.5, True),
])
def test_retention_must_cover_a_multiple_of_the_cut_interval(retention_ms: int, cut_s: float, ok: bool) -> None:
    settings = Settings(points_retention_ms=retention_ms, head_cut_interval_s=cut_s)
    if ok:
        check_points_retention(settings)
    else:
        with pytest.raises(RetentionTooShort, match="points_retention_ms"):
            check_points_retention(settings)


def test_the_topics_own_retention_is_checked_and_unlimited_passes() -> None:
    settings = Settings(head_cut_interval_s=300.0)
    check_points_retention(settings, -1, "mf.points retention.ms")
    with pytest.raises(RetentionTooShort, match=r"mf\.points retention\.ms=60000"):
        check_points_retention(settings, 60_000, "mf.points retention.ms")
