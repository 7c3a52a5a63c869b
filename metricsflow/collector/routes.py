"""Which protocol answers on which HTTP path; one line per endpoint."""

from __future__ import annotations

from aiohttp import web

from metricsflow.collector.http_app import Route, error_response, ingest, now_ms
from metricsflow.ingest.json_points import parse_json_points
from metricsflow.ingest.native import parse_native

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")


async def v1_metrics(request: web.Request) -> web.StreamResponse:
    ctype = request.content_type
    if ctype == "application/json":
        return await ingest(request, "json", lambda body, _req: parse_json_points(body, now_ms=now_ms()))
    if ctype in PROTOBUF_TYPES:
        return await ingest(request, "protobuf", lambda body, _req: parse_native(body))
    return error_response(415, "unsupported_media_type",
                          f"Content-Type {ctype!r}: use application/json or application/x-protobuf")


def http_routes() -> list[Route]:
    return [("POST", "/v1/metrics", v1_metrics)]
