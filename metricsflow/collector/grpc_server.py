"""gRPC ingest: ``metricsflow.v1.Ingest/Write`` and the client-streaming ``WriteStream``.

Requests arrive as raw bytes (no generated deserializer) so a malformed message is
answered INVALID_ARGUMENT with a reason, through the same parser as HTTP.
"""

from __future__ import annotations

import time

import grpc
from grpc import aio

from metricsflow.collector import metrics
from metricsflow.collector.pipeline import IngestPipeline, WriteOutcome
from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.ingest.native import parse_native
from metricsflow.model import DEFAULT_TENANT
from metricsflow.pb import metricsflow_pb2 as pb

SERVICE = "metricsflow.v1.Ingest"
PROTOCOL = "grpc"


def _tenant(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-scope-orgid" and str(value).strip():
            return str(value).strip()
    return DEFAULT_TENANT


class IngestService:
    def __init__(self, pipeline: IngestPipeline) -> None:
        self._pipeline = pipeline

    async def _write_one(self, body: bytes, tenant: str, context: aio.ServicerContext) -> WriteOutcome:
        received = time.perf_counter()
        try:
            self._pipeline.check_tenant(tenant)
            return await self._pipeline.accept(tenant, parse_native(body), PROTOCOL, received)
        except InvalidInput as exc:
            metrics.REQUESTS.labels(PROTOCOL, "INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except BackendUnavailable as exc:
            metrics.KAFKA_UNAVAILABLE.inc()
            metrics.REQUESTS.labels(PROTOCOL, "UNAVAILABLE").inc()
            await context.set_trailing_metadata((("retry-after", str(int(exc.retry_after_s))),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable: abort raises")

    async def write(self, body: bytes, context: aio.ServicerContext) -> pb.WriteResponse:
        outcome = await self._write_one(body, _tenant(context), context)
        metrics.REQUESTS.labels(PROTOCOL, "OK").inc()
        return outcome.to_proto()

    async def write_stream(self, bodies: object, context: aio.ServicerContext) -> pb.WriteResponse:
        total = WriteOutcome()
        tenant = _tenant(context)
        async for body in bodies:  # type: ignore[attr-defined]
            outcome = await self._write_one(body, tenant, context)
            total.accepted += outcome.accepted
            total.rejected += outcome.rejected
            total.rejections.extend(outcome.rejections[: max(0, 10 - len(total.rejections))])
        metrics.REQUESTS.labels(PROTOCOL, "OK").inc()
        return total.to_proto()


def _identity(b: bytes) -> bytes:
    return b


def build_server(pipeline: IngestPipeline, host: str, port: int, max_message_bytes: int) -> aio.Server:
    service = IngestService(pipeline)
    handlers = {
        "Write": grpc.unary_unary_rpc_method_handler(
            service.write, request_deserializer=_identity, response_serializer=pb.WriteResponse.SerializeToString),
        "WriteStream": grpc.stream_unary_rpc_method_handler(
            service.write_stream, request_deserializer=_identity,
            response_serializer=pb.WriteResponse.SerializeToString),
    }
    server = aio.server(options=[("grpc.max_receive_message_length", max_message_bytes)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"{host}:{port}")
    return server
