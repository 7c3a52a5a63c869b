"""Partial rule results: what each worker sends for its partitions, and how the owner completes them.

Every worker evaluates, at each tick ``t`` of a group, the part of each rule that its
partitions hold and sends one :class:`PartialMessage` to the group's partition of the
``rule_partials`` topic. The group's owner keeps the messages in the ``rule_partials``
table under :func:`table_key` and evaluates ``t`` once :func:`exact_cover` finds messages
whose partition sets are disjoint and cover every partition. Pure functions, no I/O.

Wire and table value, format **v1** (little-endian)::

    u32 header length | header (JSON) | blob 0 | blob 1 | ...
    header = {"v": 1, "group": "<file>;<name>", "t": <eval time ms>, "partitions": [0, 2],
              "worker": "<worker id>", "rules": [{"key": "<rule key>", "kind": "partial"|"series"|"error",
                                                  "n": <blob bytes>}, ...]}

One rule entry per rule of the group, in the group's order. ``partial`` is
``Plan.evaluate_partial``'s bytes; ``series`` is the raw series the rule selects
(``web.cluster.encode_series`` layout), sent for rules that read a series recorded by an
earlier rule of the same group; ``error`` is the UTF-8 message of a failed partial.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson

from metricsflow.errors import MetricsflowError

__all__ = [
    "PARTIALS_FORMAT_VERSION",
    "PartialFormatError",
    "PartialMessage",
    "RulePartial",
    "exact_cover",
    "group_prefix",
    "parse_table_key",
    "reads_recorded",
    "table_key",
]

PARTIALS_FORMAT_VERSION = 1
_U32 = struct.Struct("<I")
_T = struct.Struct(">q")
PartialKind = Literal["partial", "series", "error"]
_KINDS = ("partial", "series", "error")


class PartialFormatError(MetricsflowError, ValueError):
    """A rule_partials message or table value that cannot be read (counted and skipped)."""


@dataclass(frozen=True, slots=True)
class RulePartial:
    rule_key: str
    kind: PartialKind
    data: bytes


@dataclass(frozen=True, slots=True)
class PartialMessage:
    group_key: str
    time_ms: int
    partitions: tuple[int, ...]  # sorted, unique
    worker: str
    rules: tuple[RulePartial, ...]

    def to_bytes(self) -> bytes:
        header = orjson.dumps({
            "v": PARTIALS_FORMAT_VERSION, "group": self.group_key, "t": self.time_ms,
            "partitions": list(self.partitions), "worker": self.worker,
            "rules": [{"key": r.rule_key, "kind": r.kind, "n": len(r.data)} for r in self.rules],
        })
        return b"".join([_U32.pack(len(header)), header, *(r.data for r in self.rules)])

    @classmethod
    def from_bytes(cls, data: bytes) -> PartialMessage:
        try:
            (hlen,) = _U32.unpack_from(data, 0)
            doc = orjson.loads(data[4:4 + hlen])
            if doc.get("v") != PARTIALS_FORMAT_VERSION:
                raise PartialFormatError(f"unknown rule partial format {doc.get('v')!r}")
            pos = 4 + hlen
            rules = []
            for r in doc["rules"]:
                n = int(r["n"])
                if r["kind"] not in _KINDS or pos + n > len(data):
                    raise PartialFormatError(f"bad rule entry {r!r} at byte {pos} of {len(data)}")
                rules.append(RulePartial(str(r["key"]), r["kind"], bytes(data[pos:pos + n])))
                pos += n
            parts = tuple(sorted({int(p) for p in doc["partitions"]}))
            return cls(str(doc["group"]), int(doc["t"]), parts, str(doc["worker"]), tuple(rules))
        except PartialFormatError:
            raise
        except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PartialFormatError(f"cannot read rule partial of {len(data)} bytes: {exc}") from None


def group_prefix(group_key: str) -> bytes:
    """Every table key of one group starts with this (a NUL never occurs in a group key)."""
    return group_key.encode() + b"\x00"


def table_key(group_key: str, time_ms: int, partitions: Iterable[int]) -> bytes:
    """``<group>\\0<t big-endian>\\0<partitions>``: keys sort by time within a group, and the same
    coverage at the same time is one key, so a replayed or re-sent message overwrites itself."""
    return group_prefix(group_key) + _T.pack(time_ms) + b"\x00" + ",".join(map(str, sorted(partitions))).encode()


def parse_table_key(key: bytes, group_key: str) -> tuple[int, tuple[int, ...]]:
    rest = key[len(group_prefix(group_key)):]
    (t,) = _T.unpack_from(rest, 0)
    parts = rest[_T.size + 1:].decode()
    return t, tuple(int(p) for p in parts.split(",")) if parts else ()


def exact_cover(coverages: Sequence[Sequence[int]], partitions: int) -> list[int] | None:
    """Indices of coverages that are pairwise disjoint and together hold ``0..partitions-1``.

    During a rebalance two workers may both have sent for a partition; a cover takes each
    partition exactly once, so nothing is counted twice. Tries the largest coverages first
    (fewer partials to merge); the search is exponential only in the number of messages of
    one evaluation, which is about the number of workers.
    """
    sets = [frozenset(c) for c in coverages]
    order = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    want = frozenset(range(partitions))
    if any(not s <= want for s in sets):
        return None  # sent with another partition count: never mixed in

    def search(covered: frozenset[int], chosen: list[int]) -> list[int] | None:
        if covered == want:
            return chosen
        first = min(want - covered)
        for i in order:
            if first in sets[i] and not (sets[i] & covered):
                found = search(covered | sets[i], [*chosen, i])
                if found is not None:
                    return found
        return None

    return search(frozenset(), [])


class _MatcherLike(Protocol):
    @property
    def name(self) -> str: ...

    def matches(self, v: str) -> bool: ...


def reads_recorded(selectors: Iterable[Sequence[_MatcherLike]], recorded: Iterable[str]) -> bool:
    """Whether any selector can select a series named one of ``recorded``.

    Conservative: a selector without a ``__name__`` matcher can select anything.
    """
    names = list(recorded)
    if not names:
        return False
    for matchers in selectors:
        name_ms = [m for m in matchers if m.name == "__name__"]
        if any(all(m.matches(n) for m in name_ms) for n in names):
            return True
    return False
