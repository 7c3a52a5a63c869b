"""The Prometheus HTTP query API (and /v1/query with a step) over the one PromQL engine.

With one worker, data is read locally (``local_source``: the series of each planned
selection, no copy) and the engine evaluates once. With peers, the query is pushed down (metricsflow.promql.pushdown):
every partition owner evaluates its share (``POST /internal/v1/partial``: series-local
work and partial aggregates over its own partitions), and this worker merges the
partials. If two answers covered the same partition (mid-rebalance), the raw series
are gathered instead (``Cluster.gather``), which de-duplicates. Evaluation runs on a
bounded thread pool so a heavy query never stalls the event loop that also drives
the Kafka consumer; storage reads stay on the loop, as the worker's tables expect.
Small evaluations (``INLINE_MAX_SAMPLES``) run on the loop: the pool's hand-off cost
more than they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import aiohttp
import orjson
from aiohttp import web

from agents import metrics
from metricsflow import rollup
from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.promql import Engine, PromQLError, QueryResult, selections
from metricsflow.promql.downsample import DEFAULT_AGG, selector_aggregates, selector_key
from metricsflow.promql.prefetch import has_subquery
from metricsflow.promql.pushdown import Plan, plan
from metricsflow.promql.result import gc_paused
from web.cluster import (
    PARTITIONS_HEADER,
    Cluster,
    Partial,
    PartialRequest,
    Selection,
    decode_selections,
    encode_partitions,
    encode_series,
    local_source,
    select_local,
)
from web.params import now_ms, parse_duration_ms, parse_time_ms
from web.peer_channel import CHANNEL_PATH, KINDS, PeerAnswer, decode_request, encode_answer
from web.tiers import choose_tier
from web.views import STORAGE_KEY, api_error, error_body, first, params, tenant_of

log = logging.getLogger(__name__)
LOOKBACK_MS = 300_000
DEFAULT_TIMEOUT_S = 120.0
T = TypeVar("T")
PLAN_CACHE_SIZE = 256  # dashboards repeat the same few hundred expressions
# Evaluations over at most this many samples and steps (a few ms: 216,000 samples at 359 steps took
# 4-6 ms), merges of at most INLINE_MAX_BYTES of partials and answers of at most INLINE_MAX_POINTS
# and INLINE_MAX_SERIES run on the loop: sending them to the pool and back cost 0.5-1.5 ms of CPU
# per query in five of six interleaved comparisons, 5-12 % of such a query (perf/bench_query_loop_ab.py;
# perf/RESULTS.md, "Seals between cuts, small queries on the loop, page faults per query"). The loop
# waits about as long as for a cut's slice; larger work goes to the pool so consumption keeps its
# turns. A subquery's inner steps are not in what it reads: it always goes to the pool.
INLINE_MAX_SAMPLES = 250_000
INLINE_MAX_STEPS = 2_000
INLINE_MAX_BYTES = 1 << 20
INLINE_MAX_POINTS = 20_000
INLINE_MAX_SERIES = 500  # an answer's labels cost more to format than its points


def _small(query: str, samples: int, start_ms: int, end_ms: int, step_ms: int) -> bool:
    """Whether evaluating ``query`` over ``samples`` costs few enough ms to run on the loop."""
    steps = (end_ms - start_ms) // step_ms + 1 if step_ms else 1
    return samples <= INLINE_MAX_SAMPLES and steps <= INLINE_MAX_STEPS and not has_subquery(query)


def tier_lookback_ms(lookback_ms: int, tier: str) -> int:
    # One sample per rollup window: the lookback must reach back at least one window.
    return lookback_ms if tier == "raw" else max(lookback_ms, rollup.TIERS_MS[tier] + 1)


def tier_selections(query: str, sels: list[tuple], tier: str) -> list[Selection]:
    """Raw selections as read from ``tier``: rollup reads name the aggregate each selector wants."""
    if tier == "raw":
        return list(sels)
    aggs = selector_aggregates(query)
    return [(m, s, e, tier, aggs.get(selector_key(m), DEFAULT_AGG)) for m, s, e in sels]


class QueryService:
    def __init__(self, cluster: Cluster, lookback_ms: int = LOOKBACK_MS, threads: int = 2) -> None:
        self.cluster = cluster
        self._storage = cluster.storage
        self._lookback_ms = lookback_ms
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="promql")
        self._plans: OrderedDict[tuple[str, int], Plan] = OrderedDict()

    def plan(self, query: str, lookback_ms: int) -> Plan:
        key = (query, lookback_ms)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = plan(query, lookback_ms=lookback_ms)
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return found

    async def run(self, tenant: str, query: str, start_ms: int, end_ms: int, step_ms: int,
                  timeout_s: float, warnings: list[str] | None = None, tier: str = "raw") -> QueryResult:
        lookback = tier_lookback_ms(self._lookback_ms, tier)
        if self.cluster.peer_urls():
            req = PartialRequest(tenant, query, start_ms, end_ms, step_ms, tier, lookback)
            result = await self._run_pushdown(req, timeout_s, warnings)
            if result is not None:
                return result
        sels = tier_selections(query, selections(query, start_ms, end_ms, max(step_ms, 1), lookback), tier)
        source = await self.cluster.gather(tenant, sels, warnings)
        engine = Engine(source, lookback_ms=lookback, timeout_s=timeout_s)
        if step_ms == 0:
            run = functools.partial(engine.instant, query, start_ms)
        else:
            run = functools.partial(engine.range, query, start_ms, end_ms, step_ms)
        return await self.evaluate(run, _small(query, source.samples(), start_ms, end_ms, step_ms))

    async def evaluate(self, run: Callable[[], T], small: bool) -> T:
        """``run()`` without garbage collection: on the loop if ``small``, else on the pool."""
        if small:
            return _without_gc(run)
        return await asyncio.get_running_loop().run_in_executor(self.pool, _without_gc, run)

    async def partial(self, req: PartialRequest, timeout_s: float | None = None) -> Partial:
        """This worker's share of ``req``: storage read on the loop, evaluation on the pool unless small.

        The worker that asked the peers runs its own share once their requests are written
        (``Cluster.gather_partials``): a small one on the loop too, where the pool's hand-off
        and the threads' turns at the GIL cost q3 on two workers 0.4 ms (perf/RESULTS.md).
        """
        p = self.plan(req.query, req.lookback_ms)
        sels = tier_selections(req.query, p.selections(req.start_ms, req.end_ms, req.step_ms), req.tier)
        partitions = frozenset(self._storage.readable_partitions())
        source = local_source(self._storage, req.tenant, sels)
        run = functools.partial(p.evaluate_partial, source, req.start_ms, req.end_ms, req.step_ms,
                                timeout_s=timeout_s)
        small = _small(req.query, source.samples(), req.start_ms, req.end_ms, req.step_ms)
        data = await self.evaluate(run, small)
        return Partial(data, partitions)

    async def _run_pushdown(self, req: PartialRequest, timeout_s: float,
                            warnings: list[str] | None) -> QueryResult | None:
        """Plan, partials from every owner, merge; None when two answers overlap (rebalance)."""
        p = self.plan(req.query, req.lookback_ms)
        own_warnings: list[str] = []
        parts = await self.cluster.gather_partials(req, lambda: self.partial(req, timeout_s),
                                                   own_warnings)
        seen: set[int] = set()
        for part in parts:
            if seen & part.partitions:
                return None
            seen |= part.partitions
        if warnings is not None:
            warnings.extend(own_warnings)
        elif own_warnings:
            raise BackendUnavailable(own_warnings[0])
        merge = functools.partial(p.merge, [part.data for part in parts], req.start_ms, req.end_ms, req.step_ms,
                                  timeout_s=timeout_s)
        return await self.evaluate(merge, sum(len(part.data) for part in parts) <= INLINE_MAX_BYTES)


QUERY_SERVICE_KEY = web.AppKey("query_service", QueryService)


def _without_gc(run: Callable[[], T]) -> T:
    with gc_paused():
        return run()


def _timeout(p: dict[str, list[str]]) -> float:
    raw = (p.get("timeout") or [None])[0]
    return min(DEFAULT_TIMEOUT_S, parse_duration_ms(raw, "timeout") / 1000) if raw else DEFAULT_TIMEOUT_S


async def _answer(request: web.Request, query: str | None, start_ms: int, end_ms: int, step_ms: int,
                  timeout_s: float, extra: dict | None = None) -> web.Response:
    if not query:
        return api_error(400, "bad_data", 'invalid parameter "query": missing query')
    service = request.app[QUERY_SERVICE_KEY]
    started = time.perf_counter()
    warnings: list[str] = []
    try:
        retention = request.app[STORAGE_KEY].retention()
        tier = choose_tier(request.query.get("tier", "auto"), start_ms, end_ms, now_ms(), retention, step_ms)
        extra = {**(extra or {}), "tier": tier}
        result = await service.run(tenant_of(request), query, start_ms, end_ms, step_ms, timeout_s, warnings, tier)
    except InvalidInput as exc:
        return api_error(400, "bad_data", exc.detail)
    except PromQLError as exc:
        return api_error(exc.http_status, exc.error_type, str(exc))
    except BackendUnavailable as exc:
        return api_error(503, "unavailable", str(exc))
    finally:
        metrics.QUERY_SECONDS.labels("range" if step_ms else "instant").observe(time.perf_counter() - started)
    def encode() -> bytes:
        tail = {**(extra or {}), **({"warnings": warnings} if warnings else {})}
        more = b"," + orjson.dumps(tail)[1:-1] if tail else b""
        return b'{"status":"success","data":' + result.to_json_bytes() + more + b"}"

    # Formatting a large matrix takes longer than evaluating it; keep it off the event loop too.
    small = result.points() <= INLINE_MAX_POINTS and len(result.series) <= INLINE_MAX_SERIES
    payload = await service.evaluate(encode, small)
    return web.Response(body=payload, content_type="application/json")


async def instant_query(request: web.Request) -> web.StreamResponse:
    p = await params(request)
    try:
        t = parse_time_ms(first(p, "time"), now_ms(), "time")
        timeout_s = _timeout(p)
    except InvalidInput as exc:
        return api_error(400, "bad_data", exc.detail)
    return await _answer(request, first(p, "query"), t, t, 0, timeout_s)


async def range_query(request: web.Request) -> web.StreamResponse:
    p = await params(request)
    try:
        for name in ("start", "end", "step"):
            if not first(p, name):
                raise InvalidInput("bad_data", f'invalid parameter "{name}": missing')
        start = parse_time_ms(first(p, "start"), 0, "start")
        end = parse_time_ms(first(p, "end"), 0, "end")
        step = parse_duration_ms(first(p, "step") or "", "step")
        timeout_s = _timeout(p)
    except InvalidInput as exc:
        return api_error(400, "bad_data", exc.detail)
    return await _answer(request, first(p, "query"), start, end, step, timeout_s)


async def select_answer(app: web.Application, body: bytes) -> PeerAnswer:
    """A peer's share of a query: raw series of this worker's active partitions."""
    try:
        tenant, sels = decode_selections(body)
    except InvalidInput as exc:
        return _error_answer(400, "bad_data", exc.detail)
    return PeerAnswer(200, encode_series(select_local(app[STORAGE_KEY], tenant, sels)))


async def partial_answer(app: web.Application, body: bytes) -> PeerAnswer:
    """A peer's share of a query, pushed down: ``Plan.evaluate_partial`` over this worker's partitions."""
    try:
        req = PartialRequest.decode(body)
        part = await app[QUERY_SERVICE_KEY].partial(req, DEFAULT_TIMEOUT_S)
    except InvalidInput as exc:
        return _error_answer(400, "bad_data", exc.detail)
    except PromQLError as exc:
        return _error_answer(exc.http_status, exc.error_type, str(exc))
    return PeerAnswer(200, part.data, encode_partitions(sorted(part.partitions)))


def _error_answer(status: int, error_type: str, message: str) -> PeerAnswer:
    return PeerAnswer(status, error_body(error_type, message))


_ANSWERS: dict[int, Callable[[web.Application, bytes], Awaitable[PeerAnswer]]] = {
    KINDS["select"]: select_answer, KINDS["partial"]: partial_answer}


def _http_answer(answer: PeerAnswer) -> web.Response:
    if answer.status != 200:
        return web.Response(body=answer.body, status=answer.status, content_type="application/json")
    headers = {PARTITIONS_HEADER: answer.partitions} if answer.partitions else None
    return web.Response(body=answer.body, content_type="application/octet-stream", headers=headers)


async def internal_select(request: web.Request) -> web.StreamResponse:
    return _http_answer(await select_answer(request.app, await request.read()))


async def internal_partial(request: web.Request) -> web.StreamResponse:
    return _http_answer(await partial_answer(request.app, await request.read()))


async def peer_channel(request: web.Request) -> web.StreamResponse:
    """A peer's channel (web/peer_channel.py): each request frame answered as its POST route would.

    Frames are answered concurrently, each while cuts wait (as the middleware does for a
    request); the connection itself does not hold cuts back.
    """
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    app = request.app
    open_channels = app[CHANNELS_KEY]
    open_channels.add(ws)
    sending = asyncio.Lock()
    answering: set[asyncio.Task[None]] = set()

    async def answer(frame: bytes) -> None:
        try:
            request_id, kind, body = decode_request(frame)
        except ValueError:
            await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA, message=b"unreadable request")
            return
        handler = _ANSWERS.get(kind)
        if handler is None:
            reply = _error_answer(400, "bad_data", f"unknown channel request kind {kind}")
        else:
            try:
                with app[STORAGE_KEY].queries.running():
                    reply = await handler(app, body)
            except Exception as exc:  # the POST route would answer 500; the asker must not wait for nothing
                log.exception("peer channel request failed")
                reply = _error_answer(500, "internal", f"{type(exc).__name__}: {exc}")
        async with sending:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if not ws.closed:
                    await ws.send_bytes(encode_answer(request_id, reply))

    try:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                task = asyncio.create_task(answer(msg.data))
                answering.add(task)
                task.add_done_callback(answering.discard)
    finally:
        open_channels.discard(ws)
        for task in list(answering):
            task.cancel()
    return ws


async def _close_channels(app: web.Application) -> None:
    # Open channels would hold the server's shutdown until its timeout.
    for ws in list(app[CHANNELS_KEY]):
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"worker stopping")


CHANNELS_KEY = web.AppKey("peer_channels", set)


def add_query_routes(app: web.Application) -> None:
    for method in ("GET", "POST"):
        app.router.add_route(method, "/api/v1/query", instant_query)
        app.router.add_route(method, "/api/v1/query_range", range_query)
    app.router.add_post("/internal/v1/select", internal_select)
    app.router.add_post("/internal/v1/partial", internal_partial)
    app[CHANNELS_KEY] = set()
    app.router.add_get(CHANNEL_PATH, peer_channel)
    app.on_shutdown.append(_close_channels)
