"""Scatter-gather between workers: fetch the series a query needs from every partition owner.

Each worker answers ``POST /internal/v1/select`` for its own active partitions.
The worker that received a query fetches every selection (``selections()`` of
the engine: selector + exact time window) from its peers and itself, concurrently,
into one ``MemorySource``, then evaluates once. With one worker nothing goes over
HTTP. Series never span partitions, so the union is disjoint; during a rebalance
two owners may both answer for a series and ``MemorySource.add`` merges them.

Wire format of the select answer (little-endian): u32 header length, the header
(JSON: a list of {"labels", "n"}), then per series n int64 timestamps followed by
n float64 values. Values travel as raw bytes, so NaN payloads (stale markers) survive.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence

import aiohttp
import numpy as np
import orjson

from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.promql.source import Matcher, MemorySource, SeriesData
from tables.storage import WorkerStorage

# (matchers, start ms, end ms) reads raw samples; a fourth and fifth element
# (tier, aggregate) read one synthetic sample per rollup window instead.
Selection = tuple  # (list[Matcher], int, int) or (list[Matcher], int, int, str, str)
_U32 = struct.Struct("<I")
PEER_TIMEOUT_S = 30.0


def encode_series(series: Sequence[SeriesData]) -> bytes:
    header = orjson.dumps([{"labels": s.labels, "n": int(s.timestamps_ms.size)} for s in series])
    blobs = [b"".join((s.timestamps_ms.astype("<i8").tobytes(), s.values.astype("<f8").tobytes())) for s in series]
    return _U32.pack(len(header)) + header + b"".join(blobs)


def decode_series(data: bytes) -> list[SeriesData]:
    try:
        (hlen,) = _U32.unpack_from(data, 0)
        header = orjson.loads(data[4:4 + hlen])
        pos = 4 + hlen
        out = []
        for item in header:
            n = int(item["n"])
            ts = np.frombuffer(data, dtype="<i8", count=n, offset=pos)
            vals = np.frombuffer(data, dtype="<f8", count=n, offset=pos + 8 * n)
            pos += 16 * n
            out.append(SeriesData(item["labels"], ts, vals))
        return out
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailable(f"peer answered an unreadable select response: {exc}") from exc


def encode_selections(tenant: str, selections: Sequence[Selection]) -> bytes:
    return orjson.dumps({"tenant": tenant, "selections": [
        [[[m.name, m.op, m.value] for m in sel[0]], *sel[1:]] for sel in selections]})


def decode_selections(body: bytes) -> tuple[str, list[Selection]]:
    try:
        doc = orjson.loads(body)
        sels: list[Selection] = []
        for ms, start, end, *tier_agg in doc["selections"]:
            sels.append(([Matcher(n, op, v) for n, op, v in ms], int(start), int(end), *map(str, tier_agg[:2])))
        return str(doc["tenant"]), sels
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("bad_data", f"malformed select request: {exc}") from None


def select_local(storage: WorkerStorage, tenant: str, selections: Sequence[Selection]) -> list[SeriesData]:
    out: list[SeriesData] = []
    for matchers, start, end, *tier_agg in selections:
        if tier_agg and tier_agg[0] != "raw":
            out.extend(storage.select_rollup(tenant, matchers, start, end, tier_agg[0], tier_agg[1]))
        else:
            out.extend(storage.select(tenant, matchers, start, end))
    return out


class Cluster:
    """Knows the peers (from Faust's assignment) and gathers their series."""

    def __init__(self, storage: WorkerStorage, own_url: str, peers: Callable[[], set[str]]) -> None:
        self._storage = storage
        self._own_url = own_url.rstrip("/")
        self._peers = peers
        self._session: aiohttp.ClientSession | None = None

    def peer_urls(self) -> list[str]:
        return sorted(u.rstrip("/") for u in self._peers() if u and u.rstrip("/") != self._own_url)

    async def _fetch(self, url: str, body: bytes) -> list[SeriesData]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S))
        try:
            async with self._session.post(f"{url}/internal/v1/select", data=body) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise BackendUnavailable(f"peer {url} answered {resp.status}: {data[:200]!r}")
                return decode_series(data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendUnavailable(f"peer {url} unreachable: {exc}") from exc

    async def gather(self, tenant: str, selections: Sequence[Selection],
                     warnings: list[str] | None = None) -> MemorySource:
        """Series of every selection from all owners.

        A peer that cannot be reached (it died and the group has not rebalanced yet)
        leaves its partitions out: the answer is partial and says so in ``warnings``,
        as Prometheus' API does, rather than failing every query during a failover.
        """
        source = MemorySource()
        peers = self.peer_urls()
        body = encode_selections(tenant, selections)
        remote = asyncio.gather(*(self._fetch(url, body) for url in peers), return_exceptions=True)
        source.add_series(select_local(self._storage, tenant, selections))
        for series in await remote:
            if isinstance(series, BackendUnavailable):
                if warnings is None:
                    raise series
                warnings.append(f"partial result: {series}")
            elif isinstance(series, BaseException):
                raise series
            else:
                source.add_series(series)
        return source

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
