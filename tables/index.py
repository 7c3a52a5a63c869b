"""The series index of one partition: label postings → series ids.

Built from the series table (itself fed by the compacted mf.series topic).
The tenant is a posting list of its own, so every lookup starts inside one
tenant and no query can reach another tenant's series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol


class MatcherLike(Protocol):
    """What the index needs of a label matcher (``metricsflow.promql.source.Matcher`` fits)."""

    name: str
    op: str
    value: str

    def matches(self, v: str) -> bool: ...


class SeriesIndex:
    def __init__(self) -> None:
        self.labels: dict[int, dict[str, str]] = {}
        self.kinds: dict[int, int] = {}
        self._tenant_of: dict[int, str] = {}
        self._by_tenant: dict[str, set[int]] = defaultdict(set)
        self._postings: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, sid: int, tenant: str, labels: dict[str, str], kind: int = 0) -> None:
        if sid in self.labels:
            return
        # Kept in name order: a query's label tuple is then the dict's items as they are.
        self.labels[sid] = dict(sorted(labels.items()))
        self.kinds[sid] = kind
        self._tenant_of[sid] = tenant
        self._by_tenant[tenant].add(sid)
        for name, value in labels.items():
            self._postings[name][value].add(sid)

    def label_key(self, sid: int) -> tuple[tuple[str, str], ...]:
        """The series' labels as the engine keys them (name order, no empty values): no sort per query,
        which took 3 µs per series of 11 labels (perf/RESULTS.md, "Query latency")."""
        labels = self.labels[sid]
        if "" in labels.values():
            return tuple((k, v) for k, v in labels.items() if v != "")
        return tuple(labels.items())

    def remove(self, sid: int) -> None:
        labels = self.labels.pop(sid, None)
        if labels is None:
            return
        self.kinds.pop(sid, None)
        tenant = self._tenant_of.pop(sid)
        self._by_tenant[tenant].discard(sid)
        for name, value in labels.items():
            self._postings[name][value].discard(sid)

    def select(self, tenant: str, matchers: Sequence[MatcherLike]) -> list[int]:
        """Series ids of ``tenant`` matching every matcher (a missing label matches as "")."""
        candidates = self._by_tenant.get(tenant)
        if not candidates:
            return []
        equal = [m for m in matchers if m.op == "=" and m.value != ""]
        for m in sorted(equal, key=lambda m: len(self._postings.get(m.name, {}).get(m.value, ()))):
            candidates = candidates & self._postings.get(m.name, {}).get(m.value, set())
            if not candidates:
                return []
        rest = [m for m in matchers if m not in equal]
        if not rest:
            return sorted(candidates)
        out = []
        for sid in candidates:
            labels = self.labels[sid]
            if all(m.matches(labels.get(m.name, "")) for m in rest):
                out.append(sid)
        return sorted(out)

    def label_names(self, tenant: str, sids: Iterable[int] | None = None) -> set[str]:
        if sids is None:
            sids = self._by_tenant.get(tenant, ())
        names: set[str] = set()
        for sid in sids:
            names.update(self.labels[sid])
        return names

    def label_values(self, tenant: str, name: str, sids: Iterable[int] | None = None) -> set[str]:
        if sids is None:
            tenant_ids = self._by_tenant.get(tenant, set())
            return {v for v, ids in self._postings.get(name, {}).items() if ids & tenant_ids}
        return {self.labels[sid][name] for sid in sids if name in self.labels[sid]}
