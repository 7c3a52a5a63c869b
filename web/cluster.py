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

Pushdown (issue 4): with peers, the query path asks each for ``POST /internal/v1/partial``
instead (body: JSON tenant, query, start, end, step, tier, lookback_ms; answer: the
peer's ``Plan.evaluate_partial`` bytes, see metricsflow/promql/partial_wire.py, and the
partitions it covered in ``X-MF-Partitions``). Aggregates then travel as per-step
states, a few KB instead of 16 B per raw sample. Partials cannot be de-duplicated the
way raw series are, so when two answers cover the same partition (mid-rebalance) the
caller falls back to gathering raw series.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import numpy as np
import orjson
from prometheus_client import Counter

from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.promql import PromQLExecutionError
from metricsflow.promql.result import gc_paused
from metricsflow.promql.source import Matcher, MemorySource, SelectionSource, SeriesData
from tables.storage import WorkerStorage
from web.peer_channel import ChannelUnavailable, PeerAnswer, PeerChannel

# (matchers, start ms, end ms) reads raw samples; a fourth and fifth element
# (tier, aggregate) read one synthetic sample per rollup window instead.
Selection = tuple  # (list[Matcher], int, int) or (list[Matcher], int, int, str, str)
_U32 = struct.Struct("<I")
PEER_TIMEOUT_S = 30.0
# How long a query waits for its requests to the peers to be written before its own share (a bound:
# the requests are out within a few turns of the loop, a failed one sets its event at once).
PEER_SEND_WAIT_S = 0.05
PARTITIONS_HEADER = "X-MF-Partitions"

PEER_ANSWERS = Counter("mf_worker_query_peer_answers", "Peer answers received for queries, by kind (select, partial)",
                       ["kind"])
PEER_BYTES = Counter("mf_worker_query_peer_bytes", "Bytes received from peers for queries, by kind (select, partial)",
                     ["kind"])
PEER_REQUESTS = Counter("mf_worker_query_peer_requests",
                        "Requests to peers for queries, by transport (channel: the peer's WebSocket; http: a POST)",
                        ["transport"])
# The issue-4 name: how many partials (peers' and this worker's own) queries merged.
PARTIALS = Counter("mf_worker_query_partials", "Query partials merged (from peers and local)", ["source"])


@dataclass(frozen=True, slots=True)
class PartialRequest:
    """What a peer needs to compute its share of a query."""

    tenant: str
    query: str
    start_ms: int
    end_ms: int
    step_ms: int
    tier: str = "raw"
    lookback_ms: int = 300_000

    def encode(self) -> bytes:
        return orjson.dumps({"tenant": self.tenant, "query": self.query, "start": self.start_ms, "end": self.end_ms,
                             "step": self.step_ms, "tier": self.tier, "lookback_ms": self.lookback_ms})

    @classmethod
    def decode(cls, body: bytes) -> PartialRequest:
        try:
            doc = orjson.loads(body)
            return cls(str(doc["tenant"]), str(doc["query"]), int(doc["start"]), int(doc["end"]), int(doc["step"]),
                       str(doc.get("tier", "raw")), int(doc.get("lookback_ms", 300_000)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput("bad_data", f"malformed partial request: {exc}") from None


@dataclass(frozen=True, slots=True)
class Partial:
    """One owner's share: the encoded partial and the partitions it covered."""

    data: bytes
    partitions: frozenset[int]


def encode_partitions(parts: Sequence[int]) -> str:
    return ",".join(str(p) for p in sorted(parts))


def decode_partitions(text: str | None) -> frozenset[int]:
    try:
        return frozenset(int(p) for p in (text or "").split(",") if p)
    except ValueError as exc:
        raise BackendUnavailable(f"peer answered an unreadable partition list {text!r}") from exc


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


def local_source(storage: WorkerStorage, tenant: str, selections: Sequence[Selection]) -> SelectionSource:
    """Every selection read from this worker's storage, for the engine to evaluate on directly."""
    source = SelectionSource()
    with gc_paused():  # a read allocates per series and block
        for matchers, start, end, *tier_agg in selections:
            if tier_agg and tier_agg[0] != "raw":
                source.add(matchers, select_local(storage, tenant, [(matchers, start, end, *tier_agg)]))
            else:
                source.add(matchers, storage.select_range(tenant, matchers, start, end))
    return source


async def _body_going_out(_session: aiohttp.ClientSession, ctx: SimpleNamespace,
                          _params: aiohttp.TraceRequestChunkSentParams) -> None:
    # aiohttp calls this just before it writes the body (with the headers) to the socket.
    sent = (ctx.trace_request_ctx or {}).get("sent")
    if sent is not None:
        sent.set()


def _count_answer(url: str, kind: str, status: int, data: bytes) -> None:
    """A peer's answer counted, or BackendUnavailable if it is not one."""
    if status != 200:
        raise BackendUnavailable(f"peer {url} answered {status}: {data[:200]!r}")
    PEER_ANSWERS.labels(kind).inc()
    PEER_BYTES.labels(kind).inc(len(data))


async def _written(sent: Iterable[asyncio.Event]) -> None:
    """Until the requests to the peers are written (at most PEER_SEND_WAIT_S).

    The local storage read that follows holds the loop: a request still unwritten waited
    for it, and the peer started its share only after it (q3 on two workers: 7.2 ms to a
    peer's answer that took it 3.6). A request takes a few turns of the loop to go out.
    """
    async def every() -> None:
        for ev in sent:
            await ev.wait()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(every(), PEER_SEND_WAIT_S)


class Cluster:
    """Knows the peers (from Faust's assignment) and gathers their series."""

    def __init__(self, storage: WorkerStorage, own_url: str, peers: Callable[[], set[str]]) -> None:
        self._storage = storage
        self._own_url = own_url.rstrip("/")
        self._peers = peers
        self._session: aiohttp.ClientSession | None = None
        self._channels: dict[str, PeerChannel] = {}

    @property
    def storage(self) -> WorkerStorage:
        return self._storage

    def peer_urls(self) -> list[str]:
        return sorted(u.rstrip("/") for u in self._peers() if u and u.rstrip("/") != self._own_url)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            sent = aiohttp.TraceConfig()
            sent.on_request_chunk_sent.append(_body_going_out)
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S),
                                                  trace_configs=[sent])
        return self._session

    def _channel(self, url: str) -> PeerChannel:
        channel = self._channels.get(url)
        if channel is None:
            channel = self._channels[url] = PeerChannel(url, self._client)
        return channel

    async def _post(self, url: str, kind: str, body: bytes, sent: asyncio.Event) -> PeerAnswer:
        """``POST /internal/v1/<kind>`` to a peer, over its channel if it offers one (web/peer_channel.py):
        its answer, whichever way it came. ``sent`` is set once the request is written (or failed
        before it was)."""
        channel = self._channel(url)
        if channel.usable():
            try:
                answer = await channel.request(kind, body, sent, PEER_TIMEOUT_S)
            except ChannelUnavailable:
                pass  # the HTTP route answers the same request
            except TimeoutError as exc:
                raise BackendUnavailable(f"peer {url} unreachable: no answer in {PEER_TIMEOUT_S:.0f} s") from exc
            else:
                PEER_REQUESTS.labels("channel").inc()
                return answer
        PEER_REQUESTS.labels("http").inc()
        try:
            async with self._client().post(f"{url}/internal/v1/{kind}", data=body,
                                           trace_request_ctx={"sent": sent}) as resp:
                return PeerAnswer(resp.status, await resp.read(), resp.headers.get(PARTITIONS_HEADER, ""))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendUnavailable(f"peer {url} unreachable: {exc}") from exc
        finally:
            sent.set()

    async def _fetch(self, url: str, body: bytes, sent: asyncio.Event) -> list[SeriesData]:
        """A peer's series (``_post``)."""
        answer = await self._post(url, "select", body, sent)
        _count_answer(url, "select", answer.status, answer.body)
        return decode_series(answer.body)

    async def _fetch_partial(self, url: str, body: bytes, sent: asyncio.Event) -> Partial:
        """A peer's partial (``_post``)."""
        answer = await self._post(url, "partial", body, sent)
        if answer.status == 422:
            # The query itself failed on the peer (e.g. too many samples): that is the answer.
            raise PromQLExecutionError(_peer_error(answer.body))
        _count_answer(url, "partial", answer.status, answer.body)
        return Partial(answer.body, decode_partitions(answer.partitions))

    async def gather_partials(self, request: PartialRequest, local: Callable[[], Awaitable[Partial]],
                              warnings: list[str] | None = None) -> list[Partial]:
        """This worker's partial (``local``) and every peer's, concurrently.

        An unreachable peer is left out with a warning, as in ``gather``.
        """
        body = request.encode()
        sent = {url: asyncio.Event() for url in self.peer_urls()}
        remote = asyncio.gather(*(self._fetch_partial(url, body, ev) for url, ev in sent.items()),
                                return_exceptions=True)
        await _written(sent.values())
        try:
            out = [await local()]
        finally:
            answers = await remote
        PARTIALS.labels("local").inc()
        for answer in answers:
            if isinstance(answer, BackendUnavailable):
                if warnings is None:
                    raise answer
                warnings.append(f"partial result: {answer}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                PARTIALS.labels("peer").inc()
                out.append(answer)
        return out

    async def gather(self, tenant: str, selections: Sequence[Selection],
                     warnings: list[str] | None = None) -> SelectionSource | MemorySource:
        """Series of every selection from all owners.

        A peer that cannot be reached (it died and the group has not rebalanced yet)
        leaves its partitions out: the answer is partial and says so in ``warnings``,
        as Prometheus' API does, rather than failing every query during a failover.
        """
        peers = self.peer_urls()
        if not peers:
            return local_source(self._storage, tenant, selections)
        source = MemorySource()
        body = encode_selections(tenant, selections)
        sent = {url: asyncio.Event() for url in peers}
        remote = asyncio.gather(*(self._fetch(url, body, ev) for url, ev in sent.items()), return_exceptions=True)
        await _written(sent.values())
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
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._session is not None:
            await self._session.close()


def _peer_error(data: bytes) -> str:
    try:
        return str(orjson.loads(data)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"peer failed the query: {data[:200]!r}"
