"""Prometheus duration strings (``1y2w3d4h5m6s7ms``), as rule files and templates use them."""

from __future__ import annotations

import re

__all__ = ["format_duration_ms", "parse_duration_ms"]

# model.ParseDuration: units in this order, each at most once; "0" alone is allowed.
_DURATION_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_MAX_DURATION_MS = (1 << 63) // 1_000_000  # Go's time.Duration range in ms


def parse_duration_ms(text: str) -> int:
    """Prometheus duration (``1y2w3d4h5m6s7ms``, or ``0``) in milliseconds; ValueError otherwise."""
    if text == "":
        raise ValueError("empty duration string")
    if text == "0":
        return 0
    m = _DURATION_RE.fullmatch(text)
    if not m or not any(m.groups()):
        raise ValueError(f'not a valid duration string: "{text}"')
    total = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_MS, strict=True) if g)
    if total > _MAX_DURATION_MS:
        raise ValueError(f'duration out of range: "{text}"')
    return total


def format_duration_ms(ms: int) -> str:
    """The inverse of :func:`parse_duration_ms` in Prometheus' canonical spelling (``1h30m``)."""
    if ms == 0:
        return "0s"
    out = []
    for unit, size in zip(("y", "w", "d", "h", "m", "s", "ms"), _UNIT_MS, strict=True):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
