"""aiohttp views of a worker: the raw /v1/query, series metadata, health, /metrics and the force flush."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import metricsflow
from agents import metrics
from metricsflow.errors import InvalidInput
from metricsflow.model import DEFAULT_TENANT
from metricsflow.promql.source import Matcher
from tables.storage import WorkerStorage
from web.formatting import matrix_series
from web.params import now_ms, parse_duration_ms, parse_selector, parse_time_ms
from web.tiers import ROLLUP_AGGS, choose_tier

STORAGE_KEY = web.AppKey("storage", WorkerStorage)
READY_KEY = web.AppKey("ready", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_RANGE_MS = 3600 * 1000


def ok(data: object) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "success", "data": data}), content_type="application/json")


def error_body(error_type: str, message: str) -> bytes:
    """Prometheus' error document."""
    return orjson.dumps({"status": "error", "errorType": error_type, "error": message})


def api_error(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(body=error_body(error_type, message), status=status, content_type="application/json")


def tenant_of(request: web.Request) -> str:
    return request.headers.get("X-Scope-OrgID", "").strip() or DEFAULT_TENANT


async def params(request: web.Request) -> dict[str, list[str]]:
    """GET query and POST form parameters together, every value kept (match[] repeats)."""
    out: dict[str, list[str]] = {}
    for key, value in request.query.items():
        out.setdefault(key, []).append(value)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        for key, value in (await request.post()).items():
            out.setdefault(key, []).append(str(value))
    return out


def first(p: dict[str, list[str]], name: str) -> str | None:
    values = p.get(name)
    return values[0] if values else None


def timed(endpoint: str, handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        except InvalidInput as exc:
            return api_error(400, "bad_data", exc.detail)
        finally:
            metrics.QUERY_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return wrapper


def _time_range(p: dict[str, list[str]]) -> tuple[int, int]:
    end = parse_time_ms(first(p, "end"), now_ms(), "end")
    start = parse_time_ms(first(p, "start"), end - DEFAULT_RANGE_MS, "start")
    if end < start:
        raise InvalidInput("bad_data", 'invalid parameter "end": end timestamp must not be before start time')
    return start, end


def _match_sets(p: dict[str, list[str]], required: bool) -> list[list[Matcher]]:
    selectors = p.get("match[]", [])
    if required and not selectors:
        raise InvalidInput("bad_data", "no match[] parameter provided")
    return [parse_selector(s) for s in selectors]


async def raw_query(request: web.Request) -> web.StreamResponse:
    """GET /v1/query?query=<selector>&start=&end=[&tier=auto|raw|1m|1h][&agg=avg|…]: samples of a selector.

    The raw tier returns every stored sample; 1m/1h return one point per window
    (at the window start) with the aggregate ``agg`` (default avg).
    """
    p = await params(request)
    query = first(p, "query")
    if not query:
        raise InvalidInput("bad_data", 'missing parameter "query"')
    start, end = _time_range(p)
    if first(p, "step"):
        from web.query_api import DEFAULT_TIMEOUT_S, _answer

        step = parse_duration_ms(first(p, "step") or "", "step")
        return await _answer(request, query, start, end, step, DEFAULT_TIMEOUT_S)
    storage = request.app[STORAGE_KEY]
    tier = choose_tier(first(p, "tier") or "auto", start, end, now_ms(), storage.retention())
    agg = first(p, "agg") or "avg"
    if agg not in ROLLUP_AGGS:
        raise InvalidInput("bad_data", f'invalid parameter "agg": {agg!r}; one of {", ".join(ROLLUP_AGGS)}')
    matchers = parse_selector(query)
    tenant = tenant_of(request)
    result = []
    warnings: list[str] = []
    from web.query_api import QUERY_SERVICE_KEY

    # Every tier is gathered from all partition owners, so any worker answers for the cluster.
    selection = (matchers, start, end) if tier == "raw" else (matchers, start, end, tier, f"window:{agg}")
    source = await request.app[QUERY_SERVICE_KEY].cluster.gather(tenant, [selection], warnings)
    series = source.select(matchers, start, end)
    result = [matrix_series(s.labels, s.timestamps_ms, s.values) for s in series if s.timestamps_ms.size]
    result.sort(key=lambda r: sorted(r["metric"].items()))  # type: ignore[union-attr]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}, "tier": tier}
    if warnings:
        body["warnings"] = warnings
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def series(request: web.Request) -> web.StreamResponse:
    p = await params(request)
    storage = request.app[STORAGE_KEY]
    seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for matchers in _match_sets(p, required=True):
        for part, sid in storage.select_ids(tenant_of(request), matchers):
            key = storage.label_key(part, sid)  # already sorted by name
            if key not in seen:
                seen[key] = dict(key)
    return ok([seen[k] for k in sorted(seen)])


async def labels(request: web.Request) -> web.StreamResponse:
    p = await params(request)
    storage = request.app[STORAGE_KEY]
    sets = _match_sets(p, required=False) or [None]
    names: set[str] = set()
    for matchers in sets:
        names |= storage.label_names(tenant_of(request), matchers)
    return ok(sorted(names))


async def label_values(request: web.Request) -> web.StreamResponse:
    p = await params(request)
    name = request.match_info["name"]
    storage = request.app[STORAGE_KEY]
    sets = _match_sets(p, required=False) or [None]
    values: set[str] = set()
    for matchers in sets:
        values |= storage.label_values(tenant_of(request), name, matchers)
    return ok(sorted(values))


async def metadata(request: web.Request) -> web.StreamResponse:
    """Metric metadata as far as we know it: the kind each series was announced with."""
    storage = request.app[STORAGE_KEY]
    kinds = {1: "gauge", 2: "counter", 3: "summary"}
    out: dict[str, list[dict[str, str]]] = {}
    for name, kind in storage.metric_kinds(tenant_of(request)).items():
        out[name] = [{"type": kinds.get(kind, "unknown"), "help": "", "unit": ""}]
    return ok(out)


async def buildinfo(_request: web.Request) -> web.StreamResponse:
    return ok({"version": metricsflow.__version__, "revision": "", "branch": "", "buildUser": "",
               "buildDate": "", "goVersion": "python"})


async def health(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE_KEY]
    return web.Response(body=orjson.dumps({"status": "ok", **storage.stats()}), content_type="application/json")


async def readiness(request: web.Request) -> web.StreamResponse:
    """200 once table recovery finished and partitions are assigned: queries see everything stored."""
    ready = request.app[READY_KEY]()  # type: ignore[operator]
    body = orjson.dumps({"ready": ready, **request.app[STORAGE_KEY].stats()})
    return web.Response(body=body, status=200 if ready else 503, content_type="application/json")


async def force_flush(request: web.Request) -> web.StreamResponse:
    """Write the storage tables' RocksDB memtables to disk, as VictoriaMetrics'
    /internal/force_flush: before a copy of the data directory (a backup, a size measurement),
    which would otherwise hold only what RocksDB flushed by itself (the tables keep no
    write-ahead log; their changelogs recover the rest)."""
    started = time.perf_counter()
    flushed = await asyncio.to_thread(request.app[STORAGE_KEY].flush_memtables)
    body = {"status": "success", "databases_flushed": flushed, "seconds": round(time.perf_counter() - started, 3)}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def prometheus_metrics(_request: web.Request) -> web.StreamResponse:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    r = app.router
    for method in ("GET", "POST"):
        r.add_route(method, "/v1/query", timed("v1_query", raw_query))
        r.add_route(method, "/api/v1/series", timed("series", series))
        r.add_route(method, "/api/v1/labels", timed("labels", labels))
    r.add_get("/api/v1/label/{name}/values", timed("label_values", label_values))
    r.add_get("/api/v1/status/buildinfo", buildinfo)
    r.add_get("/api/v1/metadata", metadata)
    r.add_get("/healthz", health)
    for method in ("GET", "POST"):
        r.add_route(method, "/internal/force_flush", force_flush)
    r.add_get("/readyz", readiness)
    r.add_get("/metrics", prometheus_metrics)
