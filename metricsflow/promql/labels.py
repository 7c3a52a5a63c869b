"""Label sets as sorted tuples: hashable, canonical and ordered like Prometheus.

Comparing two such tuples in Python gives the same order as Prometheus'
``labels.Compare`` (pairwise name, then value, shorter first), so results can be
sorted with plain ``sorted``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Labels = tuple[tuple[str, str], ...]

NAME = "__name__"
_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def from_mapping(m: Mapping[str, str]) -> Labels:
    # Prometheus never stores empty-valued labels; dropping them keeps signatures equal.
    return tuple(sorted((k, v) for k, v in m.items() if v != ""))


def to_dict(lbls: Labels) -> dict[str, str]:
    return dict(lbls)


def get(lbls: Labels, name: str) -> str:
    for k, v in lbls:
        if k == name:
            return v
    return ""


def drop_name(lbls: Labels) -> Labels:
    if lbls and lbls[0][0] == NAME:
        return lbls[1:]
    return tuple(p for p in lbls if p[0] != NAME)


def keep(lbls: Labels, names: Iterable[str]) -> Labels:
    ns = set(names)
    return tuple(p for p in lbls if p[0] in ns)


def without(lbls: Labels, names: Iterable[str]) -> Labels:
    ns = set(names)
    return tuple(p for p in lbls if p[0] not in ns)


def with_label(lbls: Labels, name: str, value: str) -> Labels:
    rest = [p for p in lbls if p[0] != name]
    if value != "":
        rest.append((name, value))
    return tuple(sorted(rest))


def go_quote(s: str) -> str:
    """Go's strconv.Quote for the characters label values hold (used in series strings)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_labels(lbls: Labels) -> str:
    """Render like Prometheus' ``labels.Labels.String`` (used in error messages)."""
    parts = []
    for k, v in lbls:
        name = k if _LEGACY_NAME.match(k) else go_quote(k)
        parts.append(f"{name}={go_quote(v)}")
    return "{" + ", ".join(parts) + "}"
