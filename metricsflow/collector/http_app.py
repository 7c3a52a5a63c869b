"""The collector's HTTP surface (aiohttp): one small handler per protocol.

Every handler reads the body, parses it with its protocol's parser and hands the
result to the shared ``IngestPipeline``; errors map to HTTP the same way for all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metricsflow.collector import metrics
from metricsflow.collector.pipeline import IngestPipeline, WriteOutcome
from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.model import DEFAULT_TENANT, ParseResult

TENANT_HEADER = "X-Scope-OrgID"
Parser = Callable[[bytes, web.Request], ParseResult]

PIPELINE_KEY = web.AppKey("pipeline", IngestPipeline)


def json_response(body: object, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    error_type = "unavailable" if status == 503 else "bad_data"
    return json_response({"status": "error", "errorType": error_type, "reason": reason, "error": message},
                         status, headers)


def tenant_of(request: web.Request) -> str:
    return request.headers.get(TENANT_HEADER, "").strip() or DEFAULT_TENANT


async def ingest(request: web.Request, protocol: str, parse: Parser, success_status: int = 202,
                 partial_status: int | None = None, otlp_response: bool = False) -> web.Response:
    """Shared body of every write endpoint: parse → pipeline → response with partial success."""
    pipeline = request.app[PIPELINE_KEY]
    try:
        body = await request.read()
        received = time.perf_counter()
    except web.HTTPRequestEntityTooLarge as exc:
        metrics.REQUESTS_REJECTED.labels(protocol, "body_too_large").inc()
        metrics.REQUESTS.labels(protocol, "413").inc()
        return error_response(413, "body_too_large", exc.text or "request body too large")
    try:
        pipeline.check_tenant(tenant_of(request))
        if not body:
            raise InvalidInput("empty_body", "request body is empty")
        parsed = parse(body, request)
        outcome = await pipeline.accept(tenant_of(request), parsed, protocol, received)
    except InvalidInput as exc:
        status = 413 if exc.reason == "body_too_large" else 400
        metrics.REQUESTS.labels(protocol, str(status)).inc()
        metrics.REQUESTS_REJECTED.labels(protocol, exc.reason).inc()
        return error_response(status, exc.reason, str(exc))
    except BackendUnavailable as exc:
        metrics.KAFKA_UNAVAILABLE.inc()
        metrics.REQUESTS.labels(protocol, "503").inc()
        return error_response(503, "kafka_unavailable", str(exc), {"Retry-After": str(int(exc.retry_after_s))})
    if otlp_response:
        return otlp_outcome_response(outcome, protocol)
    return outcome_response(outcome, protocol, success_status, partial_status)


def outcome_response(outcome: WriteOutcome, protocol: str, success_status: int,
                     partial_status: int | None = None) -> web.Response:
    if outcome.rejected and not outcome.accepted:
        status = 400
    elif outcome.rejected and partial_status is not None:
        status = partial_status
    else:
        status = success_status
    metrics.REQUESTS.labels(protocol, str(status)).inc()
    if status == 204:
        return web.Response(status=204)
    return json_response(outcome.to_json(), status)


def otlp_outcome_response(outcome: WriteOutcome, protocol: str) -> web.Response:
    """OTLP reports partial success inside a 200 ExportMetricsServiceResponse."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp

    resp = otlp.ExportMetricsServiceResponse()
    if outcome.rejected:
        resp.partial_success.rejected_data_points = outcome.rejected
        resp.partial_success.error_message = "; ".join(f"{r.reason}: {r.detail}" for r in outcome.rejections)
    metrics.REQUESTS.labels(protocol, "200").inc()
    return web.Response(body=resp.SerializeToString(), status=200, content_type="application/x-protobuf")


def now_ms() -> int:
    return int(time.time() * 1000)


async def handle_metrics(request: web.Request) -> web.Response:
    metrics.KAFKA_CONNECTED.set(1 if request.app["writer_ready"]() else 0)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "kafka_connected": request.app["writer_ready"]()}, 200)


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def build_app(pipeline: IngestPipeline, writer_ready: Callable[[], bool], max_body_bytes: int,
              routes: list[Route]) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app[PIPELINE_KEY] = pipeline
    app["writer_ready"] = writer_ready
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
