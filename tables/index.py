"""The series index of one partition: label postings → series ids.

Built from the series table (itself fed by the compacted mf.series topic).
The tenant is a posting list of its own, so every lookup starts inside one
tenant and no query can reach another tenant's series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

# A posting of a few ids is a tuple: an empty set already takes 200 B, and in a partition most
# values of a host's or a pod's label belong to one or two series. Past this size it is a set.
SMALL_POSTING = 8
Posting = tuple[int, ...] | set[int]


class MatcherLike(Protocol):
    """What the index needs of a label matcher (``metricsflow.promql.source.Matcher`` fits)."""

    name: str
    op: str
    value: str

    def matches(self, v: str) -> bool: ...


class SeriesIndex:
    """Label sets by series id and posting lists by (name, value).

    Every label name and value is kept once per index: the strings parsed from each
    series' record are replaced by the first equal string seen, so the 10 metrics of a
    host share its hostname and every series shares "__name__"; ``remove`` lets a string
    go with the last series that uses it. With small postings as tuples this took the
    heap per series of the TSBS label sets from ~2.6 KB to ~1.2 KB (perf/RESULTS.md,
    "Label index memory").
    """

    def __init__(self) -> None:
        self.labels: dict[int, dict[str, str]] = {}
        self.kinds: dict[int, int] = {}
        self._by_tenant: dict[str, set[int]] = {}
        self._postings: dict[str, dict[str, Posting]] = {}
        self._names: dict[str, str] = {}
        self._values: dict[str, dict[str, str]] = {}  # name -> the one copy of each of its values

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, sid: int, tenant: str, labels: dict[str, str], kind: int = 0) -> None:
        if sid in self.labels:
            return
        kept: dict[str, str] = {}
        # Kept in name order: a query's label tuple is then the dict's items as they are.
        for name, value in sorted(labels.items()):
            name = self._names.setdefault(name, name)
            values = self._values.get(name)
            if values is None:
                values = self._values[name] = {}
                self._postings[name] = {}
            value = values.setdefault(value, value)
            kept[name] = value
            postings = self._postings[name]
            ids = postings.get(value)
            if ids is None:
                postings[value] = (sid,)
            elif type(ids) is tuple:
                postings[value] = (*ids, sid) if len(ids) < SMALL_POSTING else {*ids, sid}
            else:
                ids.add(sid)
        self.labels[sid] = kept
        self.kinds[sid] = kind
        self._by_tenant.setdefault(tenant, set()).add(sid)

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
        for tenant, ids in self._by_tenant.items():  # a handful of tenants; a map per series cost ~100 B
            if sid in ids:
                ids.discard(sid)
                if not ids:
                    del self._by_tenant[tenant]
                break
        for name, value in labels.items():
            postings = self._postings[name]
            ids = postings[value]
            if type(ids) is tuple:
                rest = tuple(s for s in ids if s != sid)
                if rest:
                    postings[value] = rest
                    continue
            else:
                ids.discard(sid)
                if ids:
                    continue
            del postings[value]
            del self._values[name][value]
            if not postings:
                del self._postings[name], self._values[name], self._names[name]

    def _posting(self, name: str, value: str) -> Posting:
        return self._postings.get(name, {}).get(value, ())

    def select(self, tenant: str, matchers: Sequence[MatcherLike]) -> list[int]:
        """Series ids of ``tenant`` matching every matcher (a missing label matches as "")."""
        candidates = self._by_tenant.get(tenant)
        if not candidates:
            return []
        equal = [m for m in matchers if m.op == "=" and m.value != ""]
        for m in sorted(equal, key=lambda m: len(self._posting(m.name, m.value))):
            candidates = candidates.intersection(self._posting(m.name, m.value))
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
            return {v for v, ids in self._postings.get(name, {}).items() if not tenant_ids.isdisjoint(ids)}
        return {self.labels[sid][name] for sid in sids if name in self.labels[sid]}
