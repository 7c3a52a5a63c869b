"""metricsflow.client: buffer/batching, drop policies, backoff math, encoding, and the
retry rules against real in-process gRPC and HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import ClassVar

import grpc
import numpy as np
import pytest

from metricsflow.client import AsyncClient, Client, ClientConfig, MetricKind, backoff_delay_s
from metricsflow.client._core import RUNNING_COUNTER, BatchEncoder, Recorder, series_key
from metricsflow.client.transport import AsyncGrpcTransport, parse_retry_after
from metricsflow.pb import metricsflow_pb2 as pb


def recorder(**options: object) -> Recorder:
    return Recorder(ClientConfig(**options))  # type: ignore[arg-type]


def values_of(r: Recorder) -> list[float]:
    out: list[float] = []
    while (batch := r.take(partial=True)) is not None:
        out.extend(batch.values)
    return out


# -- backoff -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (0, 0.0, None, 0.0),  # full jitter: may retry at once
        (0, 0.999, None, 0.0999),  # below base
        (3, 0.5, None, 0.4),  # 0.1 * 2^3 * 0.5
        (20, 0.999, None, 29.97),  # capped at 30 s
        (0, 0.0, 2.0, 2.0),  # Retry-After is a floor
        (10, 0.999, 2.0, 29.97),  # ...but a longer jittered delay wins
        (0, 0.5, 100.0, 30.0),  # ...and the cap still applies
        (1000, 0.5, None, 15.0),  # no overflow for huge attempt numbers
    ],
)
def test_backoff_full_jitter(attempt: int, rand: float, retry_after: float | None, expected: float) -> None:
    got = backoff_delay_s(attempt, 0.1, 30.0, retry_after, rand=lambda: rand)
    assert got == pytest.approx(expected, rel=1e-9)


def test_backoff_is_spread_over_the_whole_window() -> None:
    delays = np.array([backoff_delay_s(4, 0.1, 30.0) for _ in range(4000)])
    assert delays.min() >= 0 and delays.max() <= 1.6
    assert 0.7 < delays.mean() < 0.9  # uniform on [0, 1.6]


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), (b"7", 7.0), (" 1.5 ", 1.5), ("-1", None),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)])
def test_parse_retry_after(value: object, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


# -- buffer, batching, drop policies ---------------------------------------------------------
def test_batches_by_size_and_partial_on_demand() -> None:
    r = recorder(batch_points=3)
    key = series_key("m", MetricKind.GAUGE, {"a": 1})
    assert [r.add(key, float(i), 1000 + i) for i in range(4)] == [False, False, True, False]
    full = r.take(partial=False)
    assert full is not None and list(full.values) == [0, 1, 2] and list(full.timestamps_ms) == [1000, 1001, 1002]
    assert r.take(partial=False) is None  # the 4th point waits for the time trigger
    assert r.buffered == 1
    rest = r.take(partial=True)
    assert rest is not None and list(rest.values) == [3]
    assert r.buffered == 0 and r.take(partial=True) is None


def test_drop_newest_keeps_the_first_points() -> None:
    r = recorder(batch_points=2, max_buffered_points=5, drop_policy="drop_newest")
    key = series_key("m", MetricKind.GAUGE, None)
    for i in range(8):
        r.add(key, float(i), 1)
    assert values_of(r) == [0, 1, 2, 3, 4]
    assert r.drops == {"buffer_full": 3}


@pytest.mark.parametrize("batch_points", [1, 2, 3, 100])
def test_drop_oldest_keeps_the_last_points(batch_points: int) -> None:
    r = recorder(batch_points=batch_points, max_buffered_points=5, drop_policy="drop_oldest")
    key = series_key("m", MetricKind.GAUGE, None)
    for i in range(13):
        r.add(key, float(i), 1)
    assert r.buffered == 5
    assert values_of(r) == [8, 9, 10, 11, 12]
    assert r.drops == {"buffer_full": 8}


def test_counter_points_carry_the_running_total_per_series() -> None:
    r = recorder()
    a = series_key("hits", RUNNING_COUNTER, {"route": "/a"})
    b = series_key("hits", RUNNING_COUNTER, {"route": "/b"})
    for key, inc in [(a, 1), (b, 5), (a, 2), (a, 0.5), (b, 1)]:
        r.add(key, float(inc), None)
    assert values_of(r) == [1, 5, 3, 3.5, 6]
    raw = series_key("hits", MetricKind.COUNTER, {"route": "/a"})  # write(kind=COUNTER): value as given
    r.add(raw, 42.0, None)
    assert values_of(r) == [42]


def test_counter_series_limit() -> None:
    r = recorder(max_series=2)
    for i in range(3):
        r.add(series_key("c", RUNNING_COUNTER, {"i": i}), 1.0, None)
    assert r.buffered == 2 and r.drops == {"series_limit": 1}


def test_distribution_observations_in_one_ms_get_distinct_timestamps() -> None:
    r = recorder()
    key = series_key("lat", MetricKind.DISTRIBUTION, None)
    for _ in range(50):
        r.add(key, 1.0, None)
    batch = r.take(partial=True)
    assert batch is not None
    ts = np.frombuffer(batch.timestamps_ms, dtype=np.int64)
    assert len(np.unique(ts)) == 50 and (np.diff(ts) > 0).all()
    assert ts[-1] <= time.time() * 1000 + 1000


def test_encoding_groups_series_sanitises_names_and_sets_kind() -> None:
    cfg = ClientConfig(default_tags=(("env", "prod"), ("host", "default-host")))
    r, enc = Recorder(cfg), BatchEncoder(cfg)
    r.add(series_key("http.requests", RUNNING_COUNTER, {"code": 200}), 1.0, 1000)
    r.add(series_key("temp", MetricKind.GAUGE, {"host": "a", "bad.tag": "x", "empty": ""}), 20.5, 1000)
    r.add(series_key("http.requests", RUNNING_COUNTER, {"code": 200}), 1.0, 2000)
    r.add(series_key("lat", MetricKind.DISTRIBUTION, None), 0.25, 1500)
    batch = r.take(partial=True)
    assert batch is not None
    req = pb.WriteRequest.FromString(enc.encode(batch))
    got = {}
    for s in req.series:
        labels = {lb.name: lb.value for lb in s.labels}
        got[labels["__name__"]] = (labels, s.kind, np.frombuffer(s.timestamps_ms_le, "<i8").tolist(),
                                   np.frombuffer(s.values_le, "<f8").tolist())
    assert got["http_requests"] == ({"__name__": "http_requests", "code": "200", "env": "prod",
                                     "host": "default-host"}, pb.METRIC_KIND_COUNTER, [1000, 2000], [1.0, 2.0])
    assert got["temp"] == ({"__name__": "temp", "bad_tag": "x", "env": "prod", "host": "a"},
                           pb.METRIC_KIND_GAUGE, [1000], [20.5])
    assert got["lat"][1:] == (pb.METRIC_KIND_DISTRIBUTION, [1500], [0.25])


def test_config_validation_and_options() -> None:
    with pytest.raises(ValueError):
        ClientConfig(drop_policy="drop_random")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Client("127.0.0.1:1", no_such_option=1)
    c = Client(transport="http", tenant="t1", default_tags={"app": "x"})
    try:
        assert c.config.target == "http://127.0.0.1:8080"
        assert c.config.default_tags == (("app", "x"),)
    finally:
        c.close(0)


# -- real servers on loopback --------------------------------------------------------------
class FakeIngest:
    """An in-process gRPC Ingest server answering every request, on Write or on a WriteStreamAcked
    stream, from one script of status codes ("SLOW" answers after 1 s)."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[tuple[pb.WriteRequest, dict[str, str]]] = []  # every attempt
        self.accepted: list[pb.WriteRequest] = []  # the ones answered OK
        self.methods: list[str] = []  # "unary" or "stream", per attempt
        self.streams_opened = 0
        self.lock = threading.Lock()

    def write_stream(self, bodies: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.WriteResponse]:
        with self.lock:
            self.streams_opened += 1
        for body in bodies:
            yield self.write(body, context, "stream")

    def write(self, body: bytes, context: grpc.ServicerContext, method: str = "unary") -> pb.WriteResponse:
        req = pb.WriteRequest.FromString(body)
        with self.lock:
            self.requests.append((req, dict(context.invocation_metadata())))
            self.methods.append(method)
            step = self.script.pop(0) if self.script else "OK"
        points = sum(len(s.values_le) // 8 for s in req.series)
        if step == "SLOW":
            time.sleep(1.0)
        if step == "UNAVAILABLE":
            context.set_trailing_metadata((("retry-after", "0"),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "kafka down")
        if step == "INVALID_ARGUMENT":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad_protobuf: nope")
        if step == "UNIMPLEMENTED":
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no")
        with self.lock:
            self.accepted.append(req)
        return pb.WriteResponse(accepted=points)


@pytest.fixture
def grpc_server() -> Iterator[Callable[[list[str]], tuple[str, FakeIngest]]]:
    servers: list[grpc.Server] = []

    def start(script: list[str], streams: bool = False) -> tuple[str, FakeIngest]:
        """A fake collector; without ``streams`` it knows only Write, like a collector before WriteStreamAcked."""
        fake = FakeIngest(script)
        server = grpc.server(futures.ThreadPoolExecutor(4))
        handlers = {"Write": grpc.unary_unary_rpc_method_handler(
            fake.write, request_deserializer=bytes, response_serializer=pb.WriteResponse.SerializeToString)}
        if streams:
            handlers["WriteStreamAcked"] = grpc.stream_stream_rpc_method_handler(
                fake.write_stream, request_deserializer=bytes, response_serializer=pb.WriteResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("metricsflow.v1.Ingest", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", fake

    yield start
    for s in servers:
        s.stop(0)


def test_grpc_retries_unavailable_then_delivers(grpc_server: Callable) -> None:
    target, fake = grpc_server(["UNAVAILABLE", "UNAVAILABLE"])
    with Client(target, tenant="team-a", backoff_base_s=0.01, flush_interval_s=0.05) as client:
        for i in range(10):
            client.gauge("temp", i, room="a")
        assert client.flush(10)
        st = client.stats
    assert (st.sent, st.accepted, st.retries, st.errors, st.dropped) == (10, 10, 2, 2, 0)
    assert len(fake.requests) == 3
    req, metadata = fake.requests[-1]
    assert metadata["x-scope-orgid"] == "team-a"
    assert np.frombuffer(req.series[0].values_le, "<f8").tolist() == list(range(10))


def test_grpc_sends_on_one_stream_and_opens_another_after_a_failure(grpc_server: Callable) -> None:
    target, fake = grpc_server(["UNAVAILABLE"], streams=True)
    with Client(target, tenant="team-s", backoff_base_s=0.01, flush_interval_s=0.05) as client:
        for i in range(3):
            client.gauge("temp", i, room="a")
            assert client.flush(10)
        st = client.stats
    assert (st.sent, st.accepted, st.retries, st.dropped) == (3, 3, 1, 0)
    # The first stream ended with UNAVAILABLE; its retry and the next two batches went on a second one.
    assert fake.methods == ["stream"] * 4 and fake.streams_opened == 2
    assert fake.requests[-1][1]["x-scope-orgid"] == "team-s"
    assert [np.frombuffer(r.series[0].values_le, "<f8").tolist() for r in fake.accepted] == [[0.0], [1.0], [2.0]]


def test_grpc_stream_without_an_answer_in_time_is_retried_on_a_new_one(grpc_server: Callable) -> None:
    target, fake = grpc_server(["SLOW"], streams=True)
    with Client(target, backoff_base_s=0.01, flush_interval_s=0.05, request_timeout_s=0.3) as client:
        client.gauge("x", 1)
        assert client.flush(10)
        st = client.stats
    assert (st.sent, st.retries, st.dropped) == (1, 1, 0)
    assert fake.streams_opened == 2 and fake.methods == ["stream", "stream"]


def test_grpc_invalid_argument_is_not_retried(grpc_server: Callable) -> None:
    target, fake = grpc_server(["INVALID_ARGUMENT", "UNIMPLEMENTED"])
    with Client(target, flush_interval_s=0.05) as client:
        client.gauge("x", 1)
        assert client.flush(10)
        client.gauge("x", 2)
        assert client.flush(10)
        st = client.stats
    assert len(fake.requests) == 2
    assert (st.rejected, st.retries, st.errors) == (1, 0, 2)
    assert st.dropped_by_reason == {"send_failed": 1}


class _EndedStream:
    """A grpc.aio stream the collector had ended: its write fails with ``code`` (grpc's own INTERNAL when
    it lost the status the stream ended with)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.cancelled = False
        self._code = code

    async def write(self, body: bytes) -> None:
        raise grpc.aio.AioRpcError(self._code, details="Internal error from Core")

    async def code(self) -> grpc.StatusCode:
        return self._code

    def cancel(self) -> None:
        self.cancelled = True


@pytest.mark.parametrize(("fresh", "code", "switches"), [(True, grpc.StatusCode.INTERNAL, True),
                                                         (False, grpc.StatusCode.INTERNAL, False),
                                                         (True, grpc.StatusCode.UNAVAILABLE, False)],
                         ids=["fresh-stream", "stream-in-use", "fresh-stream-in-an-outage"])
async def test_async_grpc_request_that_cannot_be_written_on_an_ended_stream_goes_unary(
        fresh: bool, code: grpc.StatusCode, switches: bool) -> None:
    """The status the stream ended with may be lost (grpc.aio reports INTERNAL): the request is sent
    with Write, whose answer counts; a fresh stream ended so, not by an outage, means a collector
    without the stream."""
    transport = AsyncGrpcTransport("127.0.0.1:1", "t")
    stream, unary = _EndedStream(code), []

    async def write(body: bytes, metadata: object, timeout: float) -> pb.WriteResponse:
        unary.append(body)
        return pb.WriteResponse(accepted=3)

    transport._stream_call = lambda metadata: stream  # type: ignore[method-assign]
    transport._call = write  # type: ignore[method-assign]
    if not fresh:
        transport._stream = stream
    outcome = await transport.send(b"req", 3, 1.0)
    assert (outcome.accepted, outcome.rejected, unary) == (3, 0, [b"req"])
    assert stream.cancelled and transport._stream is None
    assert transport._streams is not switches  # a stream in use may have ended for other reasons: kept
    await transport.close()


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "collector-without-stream"])
async def test_async_client_takes_invalid_argument_as_rejected_not_retried(grpc_server: Callable,
                                                                           streams: bool) -> None:
    """The status a stream ended with counts, whether the answer read raised it or read the end."""
    target, fake = grpc_server(["INVALID_ARGUMENT"], streams=streams)
    async with AsyncClient(target, backoff_base_s=0.01, flush_interval_s=0.05) as client:
        client.gauge("x", 1)
        assert await client.flush(10)
        st = client.stats
    assert (st.rejected, st.retries, st.sent, st.accepted) == (1, 0, 1, 0)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "collector-without-stream"])
async def test_async_client_retries_and_delivers(grpc_server: Callable, streams: bool) -> None:
    target, fake = grpc_server(["UNAVAILABLE"], streams=streams)
    async with AsyncClient(target, backoff_base_s=0.01, flush_interval_s=0.05) as client:
        client.counter("jobs", 1, queue="q")
        client.counter("jobs", 2, queue="q")
        with client.timer("work_seconds"):
            await asyncio.sleep(0.01)
        assert await client.flush(10)
        st = client.stats
    assert (st.sent, st.retries, st.dropped) == (3, 1, 0)
    assert fake.methods == ["stream" if streams else "unary"] * 2
    assert fake.streams_opened == (2 if streams else 0)
    values = {}
    for s in fake.requests[-1][0].series:
        labels = {lb.name: lb.value for lb in s.labels}
        values[labels["__name__"]] = np.frombuffer(s.values_le, "<f8").tolist()
    assert values["jobs"] == [1.0, 3.0]
    assert 0.005 < values["work_seconds"][0] < 5


class _Handler(http.server.BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []
    bodies: ClassVar[list[tuple[bytes, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Handler.bodies.append((body, self.headers.get("X-Scope-OrgID", "")))
        status = _Handler.script.pop(0) if _Handler.script else 202
        points = sum(len(s.values_le) // 8 for s in pb.WriteRequest.FromString(body).series)
        payload = (b'{"status":"success","accepted":%d,"rejected":0,"rejections":[]}' % points
                   if status == 202 else b'{"status":"error"}')
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_retries_503_and_counts_400_as_rejected(http_server: str) -> None:
    _Handler.script, _Handler.bodies = [503, 429, 202, 400], []
    with Client(http_server, transport="http", tenant="t9", backoff_base_s=0.01, flush_interval_s=0.05) as c:
        c.distribution("size_bytes", 10)
        assert c.flush(10)
        c.gauge("g", 1)
        assert c.flush(10)
        st = c.stats
    assert (st.accepted, st.rejected, st.retries) == (1, 1, 2)
    assert len(_Handler.bodies) == 4 and _Handler.bodies[0][1] == "t9"


async def test_async_http_client(http_server: str) -> None:
    _Handler.script, _Handler.bodies = [503], []
    async with AsyncClient(http_server, transport="http", backoff_base_s=0.01) as c:
        c.gauge("g", 1)
        assert await c.flush(10)
        st = c.stats
    assert (st.accepted, st.retries) == (1, 1)


# -- never blocking --------------------------------------------------------------------------
def test_unreachable_collector_never_blocks_and_close_is_bounded() -> None:
    client = Client("127.0.0.1:9", max_buffered_points=50_000, flush_interval_s=0.05)
    started = time.perf_counter()
    for i in range(100_000):
        client.gauge("cpu", i, host="a")
    elapsed = time.perf_counter() - started
    t0 = time.perf_counter()
    assert client.close(timeout_s=0.5) is False
    close_s = time.perf_counter() - t0
    st = client.stats
    assert elapsed < 5.0, f"100k calls took {elapsed:.2f} s"
    assert close_s < 2.0
    assert st.recorded == 100_000 and st.sent == 0
    assert st.dropped == 100_000
    assert st.dropped_by_reason["buffer_full"] >= 45_000


async def test_async_client_records_before_the_loop_starts_it() -> None:
    client = AsyncClient("127.0.0.1:9", flush_interval_s=0.05)
    client.gauge("x", 1)  # starts the sender lazily inside the running loop
    assert client._task is not None
    started = time.perf_counter()
    await client.close(timeout_s=0.3)
    assert time.perf_counter() - started < 2.0
    assert client.stats.dropped == 1


def test_interpreter_exit_flushes_what_close_was_never_called_for(grpc_server: Callable) -> None:
    target, fake = grpc_server([])
    script = ("from metricsflow.client import Client\n"
              f"c = Client({target!r}, flush_interval_s=60)\n"
              "c.gauge('atexit_gauge', 7)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert [np.frombuffer(s.values_le, "<f8").tolist() for r in fake.accepted for s in r.series] == [[7.0]]


def test_http_server_closing_an_idle_keepalive_connection_is_not_an_error() -> None:
    """The server answers HTTP/1.1 keep-alive, then closes the socket: the next send must
    reconnect at once, not count an error and back off."""
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                payload = b'{"accepted":1,"rejected":0}'
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
                served.append(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with Client(url, transport="http", flush_interval_s=0.05) as c:
        c.gauge("g", 1)
        assert c.flush(10)
        wait_until = time.monotonic() + 5
        while len(served) < 1 and time.monotonic() < wait_until:
            time.sleep(0.01)
        c.gauge("g", 2)
        assert c.flush(10)
        st = c.stats
    thread.join(5)
    listener.close()
    assert (st.accepted, st.errors, st.retries) == (2, 0, 0)
