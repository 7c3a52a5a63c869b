"""Sending one encoded WriteRequest: gRPC or HTTP protobuf, sync and asyncio.

Every transport answers a send with a :class:`SendOutcome` or raises one of
three errors, so the retry loop is the same for all of them:

* :class:`TransientSendError` — retry after a backoff (HTTP 408/425/429/5xx,
  connection errors; gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
  ABORTED, INTERNAL, UNKNOWN). ``retry_after_s`` carries the server's
  Retry-After (header, or gRPC trailing metadata ``retry-after``) when given.
* :class:`BatchRejected` — HTTP 400 / gRPC INVALID_ARGUMENT: the collector
  refused the whole batch as bad input; never retried, counted as rejected.
* :class:`SendFailed` — anything else (413, 404, UNIMPLEMENTED, …): retrying the
  same bytes cannot help; the batch is dropped and counted.
"""

from __future__ import annotations

import asyncio
import http.client
import queue
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import orjson

from metricsflow.errors import InvalidInput, MetricsflowError, RetryableError
from metricsflow.pb import metricsflow_pb2 as pb

GRPC_WRITE = "/metricsflow.v1.Ingest/Write"
GRPC_WRITE_STREAM = "/metricsflow.v1.Ingest/WriteStreamAcked"
TENANT_HEADER = "X-Scope-OrgID"
TENANT_METADATA = "x-scope-orgid"
MAX_MESSAGE_BYTES = 64 << 20

_RETRY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
})
_RETRY_HTTP = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class SendOutcome:
    accepted: int
    rejected: int


class TransientSendError(RetryableError):
    """The collector (or its Kafka) is unavailable; the same batch may succeed later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s if retry_after_s is not None else 0.0)
        self.server_retry_after_s = retry_after_s


class BatchRejected(InvalidInput):
    """The collector refused the batch as invalid (HTTP 400 / INVALID_ARGUMENT)."""


class SendFailed(MetricsflowError):
    """A non-retryable failure that is not about the points (e.g. 413, UNIMPLEMENTED)."""


class SyncTransport(Protocol):
    def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome: ...
    async def close(self) -> None: ...


def parse_retry_after(value: object) -> float | None:
    """Seconds from a Retry-After value (delta-seconds only; HTTP dates are ignored)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _grpc_error(exc: grpc.RpcError, points: int) -> Exception:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    message = f"gRPC {code.name if code else '?'}: {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BatchRejected("invalid_argument", message)
    if code in _RETRY_CODES:
        retry_after = None
        try:
            for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
                if key == "retry-after":
                    retry_after = parse_retry_after(value)
        except Exception:  # metadata is optional; a missing one must not hide the error
            pass
        return TransientSendError(message, retry_after)
    return SendFailed(f"{message} ({points} points dropped)")


def _http_outcome(status: int, headers: Any, payload: bytes, points: int) -> SendOutcome:
    if 200 <= status < 300:
        try:
            doc = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            doc = {}
        return SendOutcome(int(doc.get("accepted", points)), int(doc.get("rejected", 0)))
    text = payload[:300].decode("utf-8", "replace")
    if status == 400:
        raise BatchRejected("bad_request", f"HTTP 400: {text}")
    if status in _RETRY_HTTP or status >= 500:
        raise TransientSendError(f"HTTP {status}: {text}", parse_retry_after(headers.get("Retry-After")))
    raise SendFailed(f"HTTP {status}: {text} ({points} points dropped)")


def _grpc_options() -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


class _StreamEnded(TransientSendError):
    """The collector closed the stream without answering (it is stopping): send again on a new one."""


class _Stream:
    """One ``WriteStreamAcked`` call: requests go in through a queue gRPC reads from, answers come
    out through one a reader thread fills, so waiting for an answer can time out."""

    _END = object()

    def __init__(self, call: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._responses = call(iter(self._requests.get, self._END), metadata=metadata)
        threading.Thread(target=self._read, name="metricsflow-client-stream", daemon=True).start()

    def _read(self) -> None:
        try:
            for answer in self._responses:
                self._answers.put(answer)
            self._answers.put(_StreamEnded("gRPC: the collector ended the stream without an answer"))
        except grpc.RpcError as exc:
            self._answers.put(exc)

    def exchange(self, body: bytes, timeout_s: float | None) -> pb.WriteResponse:
        """Send one request, return its answer; raises grpc.RpcError, _StreamEnded or queue.Empty."""
        self._requests.put(body)
        answer = self._answers.get(timeout=timeout_s)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    def close(self) -> None:
        self._requests.put(self._END)
        self._responses.cancel()


class GrpcTransport:
    """``Ingest/WriteStreamAcked`` on one channel, one request answered at a time; the body is sent
    as raw bytes. A request on an open stream costs the collector about half a unary call; a
    collector without the method (UNIMPLEMENTED) gets a unary ``Ingest/Write`` per request from then
    on. A failed stream is dropped and the next send opens another. One caller at a time."""

    def __init__(self, target: str, tenant: str) -> None:
        self._channel = grpc.insecure_channel(target, options=_grpc_options())
        self._call = self._channel.unary_unary(GRPC_WRITE, request_serializer=bytes,
                                               response_deserializer=pb.WriteResponse.FromString)
        self._stream_call = self._channel.stream_stream(GRPC_WRITE_STREAM, request_serializer=bytes,
                                                        response_deserializer=pb.WriteResponse.FromString)
        self._metadata = ((TENANT_METADATA, tenant),)
        self._stream: _Stream | None = None
        self._streams = True  # False once the collector answered UNIMPLEMENTED to the stream

    def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome:
        if self._streams:
            if self._stream is None:
                self._stream = _Stream(self._stream_call, self._metadata)
            try:
                resp = self._stream.exchange(body, timeout_s)
            except (queue.Empty, _StreamEnded, grpc.RpcError) as exc:
                self._drop_stream()
                error = _stream_error(exc, points, timeout_s)
                if error is not None:
                    raise error from None
                self._streams = False  # an older collector: this request and the next ones unary
            else:
                return SendOutcome(resp.accepted, resp.rejected)
        try:
            resp = self._call(body, metadata=self._metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise _grpc_error(exc, points) from None
        return SendOutcome(resp.accepted, resp.rejected)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> None:
        self._drop_stream()
        self._channel.close()


class _WriteFailed(Exception):
    """A request could not be written on an asyncio stream: the stream had ended, with ``code``."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(f"the stream had ended: {code}")
        self.code = code


def _stream_error(exc: Exception, points: int, timeout_s: float | None) -> Exception | None:
    """What a send on the stream raises when it failed; None for UNIMPLEMENTED (an older
    collector: the caller sends unary from then on)."""
    if isinstance(exc, (queue.Empty, TimeoutError)):
        return TransientSendError(f"gRPC: no answer within {timeout_s} s")
    if isinstance(exc, _StreamEnded):
        return exc
    assert isinstance(exc, grpc.RpcError)
    if (exc.code() if hasattr(exc, "code") else None) == grpc.StatusCode.UNIMPLEMENTED:
        return None
    return _grpc_error(exc, points)


class HttpTransport:
    """``POST /v1/metrics`` with ``application/x-protobuf`` on one kept-alive connection."""

    def __init__(self, base_url: str, tenant: str) -> None:
        url = urllib.parse.urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if url.scheme not in ("http", "https"):
            raise ValueError(f"HTTP target {base_url!r}: want http://host:port")
        self._https = url.scheme == "https"
        self._netloc = url.netloc
        self._path = url.path.rstrip("/") + "/v1/metrics"
        self._headers = {"Content-Type": "application/x-protobuf", TENANT_HEADER: tenant}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._netloc, timeout=timeout_s)
        self._conn.timeout = timeout_s
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout_s)
        return self._conn

    def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome:
        # A kept-alive connection the server closed while idle fails on first use;
        # that is not an outage, so one immediate retry on a fresh connection.
        for fresh in (self._conn is None, True):
            try:
                conn = self._connection(timeout_s)
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh:
                    raise TransientSendError(f"HTTP connection: {exc!r}") from None
        return _http_outcome(resp.status, resp.headers, payload, points)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class AsyncGrpcTransport:
    """The asyncio twin of :class:`GrpcTransport` (grpc.aio); create inside the running loop."""

    def __init__(self, target: str, tenant: str) -> None:
        from grpc import aio

        self._aio = aio
        self._channel = aio.insecure_channel(target, options=_grpc_options())
        self._call = self._channel.unary_unary(GRPC_WRITE, request_serializer=bytes,
                                               response_deserializer=pb.WriteResponse.FromString)
        self._stream_call = self._channel.stream_stream(GRPC_WRITE_STREAM, request_serializer=bytes,
                                                        response_deserializer=pb.WriteResponse.FromString)
        self._metadata = ((TENANT_METADATA, tenant),)
        self._stream: Any = None
        self._streams = True

    async def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome:
        if self._streams:
            fresh = self._stream is None
            if fresh:
                self._stream = self._stream_call(metadata=self._metadata)
            try:
                resp = await asyncio.wait_for(self._exchange(self._stream, body), timeout_s)
            except _WriteFailed as failed:
                # The stream had ended before the request went, and grpc.aio may have put its
                # own INTERNAL in place of the status it ended with: this request goes unary, and
                # a fresh stream that ended so (not for an outage) while Write works is an older
                # collector's.
                self._drop_stream()
                resp = await self._unary(body, points, timeout_s)
                if fresh and failed.code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL):
                    self._streams = False
                return SendOutcome(resp.accepted, resp.rejected)
            except (TimeoutError, _StreamEnded, grpc.RpcError) as exc:
                self._drop_stream()
                error = _stream_error(exc, points, timeout_s)
                if error is not None:
                    raise error from None
                self._streams = False
            else:
                return SendOutcome(resp.accepted, resp.rejected)
        resp = await self._unary(body, points, timeout_s)
        return SendOutcome(resp.accepted, resp.rejected)

    async def _unary(self, body: bytes, points: int, timeout_s: float) -> pb.WriteResponse:
        try:
            return await self._call(body, metadata=self._metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise _grpc_error(exc, points) from None

    async def _exchange(self, stream: Any, body: bytes) -> pb.WriteResponse:
        try:
            await stream.write(body)
        except grpc.RpcError:
            raise _WriteFailed(await stream.code()) from None
        answer = await stream.read()  # a stream that failed raises its status here, or reads EOF
        if answer is self._aio.EOF:
            code = await stream.code()
            if code != grpc.StatusCode.OK:  # the status it ended with
                raise self._aio.AioRpcError(code, await stream.initial_metadata(), await stream.trailing_metadata(),
                                            await stream.details())
            raise _StreamEnded("gRPC: the collector ended the stream without an answer")
        return answer

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    async def close(self) -> None:
        self._drop_stream()
        await self._channel.close()


class AsyncHttpTransport:
    """The asyncio twin of :class:`HttpTransport` (aiohttp); create inside the running loop."""

    def __init__(self, base_url: str, tenant: str) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        base = base_url if "://" in base_url else f"http://{base_url}"
        self._url = base.rstrip("/") + "/v1/metrics"
        self._session = aiohttp.ClientSession(
            headers={"Content-Type": "application/x-protobuf", TENANT_HEADER: tenant})

    async def send(self, body: bytes, points: int, timeout_s: float) -> SendOutcome:
        aiohttp = self._aiohttp
        try:
            async with self._session.post(self._url, data=body,
                                          timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                payload = await resp.read()
                status, headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientSendError(f"HTTP connection: {exc!r}") from None
        return _http_outcome(status, headers, payload, points)

    async def close(self) -> None:
        await self._session.close()
