"""Which protocol answers on which HTTP path; one small handler per protocol.

Every handler only decodes its wire format; ``http_app.ingest`` and the shared
pipeline do the rest, so validation, hashing and errors are the same everywhere.
"""

from __future__ import annotations

from aiohttp import web

from metricsflow.collector.http_app import Route, error_response, ingest, now_ms
from metricsflow.ingest.influx_line import parse_influx_line
from metricsflow.ingest.json_points import parse_json_points
from metricsflow.ingest.native import parse_native
from metricsflow.ingest.otlp import parse_otlp
from metricsflow.ingest.remote_write import parse_remote_write

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")
# InfluxDB v1 /write spells precisions n/u/ms/s/m/h; v2 uses ns/us/ms/s.
_V1_PRECISION = {"n": "ns", "ns": "ns", "u": "us", "us": "us", "ms": "ms", "s": "s", "m": "m", "h": "h"}


async def v1_metrics(request: web.Request) -> web.StreamResponse:
    ctype = request.content_type
    if ctype == "application/json":
        return await ingest(request, "json", lambda body, _req: parse_json_points(body, now_ms=now_ms()))
    if ctype in PROTOBUF_TYPES:
        return await ingest(request, "protobuf", lambda body, _req: parse_native(body))
    return error_response(415, "unsupported_media_type",
                          f"Content-Type {ctype!r}: use application/json or application/x-protobuf")


async def remote_write(request: web.Request) -> web.StreamResponse:
    # Prometheus answers 400 (never retried) when any sample was refused, after storing the rest.
    proto = _content_type_param(request.headers.get("Content-Type", ""), "proto")
    if proto and proto != "prometheus.WriteRequest":
        # remote_write 2.0 asks receivers that cannot read a message type for 415.
        return error_response(415, "unsupported_media_type",
                              f"remote_write message {proto!r} is not supported; send prometheus.WriteRequest (1.0)")
    encoding = request.headers.get("Content-Encoding")
    return await ingest(request, "remote_write", lambda body, _req: parse_remote_write(body, encoding),
                        success_status=204, partial_status=400)


def _content_type_param(header: str, name: str) -> str | None:
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


async def influx_write(request: web.Request) -> web.StreamResponse:
    precision = request.query.get("precision", "ns")
    precision = _V1_PRECISION.get(precision, precision)
    return await ingest(request, "influx", lambda body, _req: parse_influx_line(body, now_ms=now_ms(),
                                                                                 precision=precision),
                        success_status=204, partial_status=400)


async def otlp_metrics(request: web.Request) -> web.StreamResponse:
    if request.content_type not in PROTOBUF_TYPES:
        return error_response(415, "unsupported_media_type", "OTLP/HTTP here takes application/x-protobuf")
    return await ingest(request, "otlp", lambda body, _req: parse_otlp(body, now_ms=now_ms()),
                        success_status=200, otlp_response=True)


def http_routes() -> list[Route]:
    return [
        ("POST", "/v1/metrics", v1_metrics),
        ("POST", "/api/v1/write", remote_write),
        ("POST", "/api/v2/write", influx_write),
        ("POST", "/write", influx_write),
        ("POST", "/v1/otlp/v1/metrics", otlp_metrics),
        ("POST", "/otlp/v1/metrics", otlp_metrics),
    ]
