"""The series index of one partition: label postings → series ids.

Built from the series table (itself fed by the compacted mf.series topic).
The tenant is a posting list of its own, so every lookup starts inside one
tenant and no query can reach another tenant's series.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Sequence
from typing import Protocol

from metricsflow.promql.regex import literal_alternatives

# A posting of a few ids is a tuple: an empty set already takes 200 B, and in a partition most
# values of a host's or a pod's label belong to one or two series. Past this size it is a dict of
# ids to None, not a set: the garbage collector tracks every set and walks all its entries in each
# full collection (0.5 s per collection for 1 M series in postings, perf/RESULTS.md, "Full
# collections"), while a dict of ints is not tracked at all; below ~100,000 ids it is smaller too.
SMALL_POSTING = 8
Posting = tuple[int, ...] | dict[int, None]
Ids = set[int] | KeysView[int]  # candidates while a selection narrows them


class MatcherLike(Protocol):
    """What the index needs of a label matcher (``metricsflow.promql.source.Matcher`` fits)."""

    name: str
    op: str
    value: str

    def matches(self, v: str) -> bool: ...


class SeriesIndex:
    """Label sets by series id and posting lists by (name, value).

    A series' labels are kept as the engine keys them: a tuple of (name, value) pairs in
    name order, empty values left out (an empty value is an absent label). Every pair and
    string is kept once per index (the first equal one seen), so the 10 metrics of a host
    share its hostname pair and every series shares "__name__"; ``remove`` lets them go
    with the last series that uses them. Small postings are tuples, larger ones dicts of
    ids. With the TSBS label sets this took the heap per series from ~2.6 KB to ~0.9 KB
    (perf/RESULTS.md, "Label index memory" and "Full collections"), and after a full
    collection nothing of the index is left for the garbage collector to walk.
    """

    def __init__(self) -> None:
        self.kinds: dict[int, int] = {}
        self._labels: dict[int, tuple[tuple[str, str], ...]] = {}
        self._by_tenant: dict[str, dict[int, None]] = {}  # ids as dict keys, as large postings
        self._postings: dict[str, dict[str, Posting]] = {}
        self._names: dict[str, str] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, sid: int) -> bool:
        return sid in self._labels

    def add(self, sid: int, tenant: str, labels: dict[str, str], kind: int = 0) -> None:
        if sid in self._labels:
            return
        kept = []
        for name, value in sorted(labels.items()):
            if value == "":
                continue
            pair = self._pairs.get((name, value))
            if pair is None:
                name = self._names.setdefault(name, name)
                pair = self._pairs[(name, value)] = (name, value)
            kept.append(pair)
            postings = self._postings.get(pair[0])
            if postings is None:
                postings = self._postings[pair[0]] = {}
            ids = postings.get(value)
            if ids is None:
                postings[pair[1]] = (sid,)
            elif type(ids) is tuple:
                postings[pair[1]] = (*ids, sid) if len(ids) < SMALL_POSTING else dict.fromkeys((*ids, sid))
            else:
                ids[sid] = None
        self._labels[sid] = tuple(kept)
        self.kinds[sid] = kind
        tenant_ids = self._by_tenant.get(tenant)
        if tenant_ids is None:
            tenant_ids = self._by_tenant[tenant] = {}
        tenant_ids[sid] = None

    def label_key(self, sid: int) -> tuple[tuple[str, str], ...]:
        """The series' labels as the engine keys them (name order, no empty values), as kept: nothing
        is built per query (a sort took 3 µs per series of 11 labels, perf/RESULTS.md, "Query latency")."""
        return self._labels[sid]

    def labels_of(self, sid: int) -> dict[str, str]:
        """The series' labels as a new dict, in name order."""
        return dict(self._labels[sid])

    def value(self, sid: int, name: str) -> str:
        """The series' value of label ``name``; "" when it has none."""
        for k, v in self._labels[sid]:
            if k == name:
                return v
        return ""

    def remove(self, sid: int) -> None:
        pairs = self._labels.pop(sid, None)
        if pairs is None:
            return
        self.kinds.pop(sid, None)
        for tenant, ids in self._by_tenant.items():  # a handful of tenants; a map per series cost ~100 B
            if sid in ids:
                del ids[sid]
                if not ids:
                    del self._by_tenant[tenant]
                break
        for pair in pairs:
            name, value = pair
            postings = self._postings[name]
            ids = postings[value]
            if type(ids) is tuple:
                rest = tuple(s for s in ids if s != sid)
                if rest:
                    postings[value] = rest
                    continue
            else:
                del ids[sid]
                if ids:
                    continue
            del postings[value], self._pairs[pair]
            if not postings:
                del self._postings[name], self._names[name]

    def _posting(self, name: str, value: str) -> Posting:
        return self._postings.get(name, {}).get(value, ())

    def select(self, tenant: str, matchers: Sequence[MatcherLike]) -> list[int]:
        """Series ids of ``tenant`` matching every matcher (a missing label matches as "")."""
        tenant_ids = self._by_tenant.get(tenant)
        if not tenant_ids:
            return []
        equal = sorted((m for m in matchers if m.op == "=" and m.value != ""),
                       key=lambda m: len(self._posting(m.name, m.value)))
        candidates: Ids = tenant_ids.keys()
        for i, m in enumerate(equal):
            posting = self._posting(m.name, m.value)
            if i == 0 and len(self._by_tenant) == 1:  # one tenant: its ids are all ids, start from the posting
                candidates = set(posting)
            else:
                candidates = _and(candidates, posting)
            if not candidates:
                return []
        for m in matchers:
            if m not in equal:
                candidates = self._filter(candidates, m)
                if not candidates:
                    return []
        return sorted(candidates)

    def _filter(self, candidates: Ids, m: MatcherLike) -> set[int]:
        """The candidates ``m`` matches (a new set): by the label's distinct values when they are
        fewer than the candidates, else by each candidate's value."""
        if m.op in ("=~", "!~"):
            literals = literal_alternatives(m.value)
            if literals is not None and "" not in literals:  # host=~"a|b|c", as dashboards' variables write it
                hits: set[int] = set()
                for v in literals:
                    hits.update(self._posting(m.name, v))
                return candidates & hits if m.op == "=~" else candidates - hits
        values = self._postings.get(m.name, {})
        if len(values) > len(candidates):
            return {sid for sid in candidates if m.matches(self.value(sid, m.name))}
        if m.matches(""):  # series without the label match: leave out those whose value does not
            out = set(candidates)
            for v, ids in values.items():
                if not m.matches(v):
                    out.difference_update(ids)
            return out
        out = set()
        for v, ids in values.items():
            if m.matches(v):
                out.update(ids)
        out.intersection_update(candidates)
        return out

    def label_names(self, tenant: str, sids: Iterable[int] | None = None) -> set[str]:
        if sids is None:
            tenant_ids = self._by_tenant.get(tenant, {}).keys()
            return {name for name, values in self._postings.items()
                    if any(not tenant_ids.isdisjoint(_view(ids)) for ids in values.values())}
        return {name for sid in sids for name, _ in self._labels[sid]}

    def label_values(self, tenant: str, name: str, sids: Iterable[int] | None = None) -> set[str]:
        if sids is None:
            tenant_ids = self._by_tenant.get(tenant, {}).keys()
            return {v for v, ids in self._postings.get(name, {}).items() if not tenant_ids.isdisjoint(_view(ids))}
        return {v for sid in sids for k, v in self._labels[sid] if k == name}


def _view(posting: Posting) -> tuple[int, ...] | KeysView[int]:
    """A posting as set operations take it: with a view on both sides, C walks the smaller one."""
    return posting.keys() if type(posting) is dict else posting


def _and(candidates: Ids, posting: Posting) -> set[int]:
    """The candidates in ``posting``, walking the smaller of the two."""
    if type(posting) is tuple:
        return {sid for sid in posting if sid in candidates}
    return candidates & posting.keys()
