"""Send pre-encoded requests: the anchors' time-ordered chain schedule, or a paced stream.

Chain schedule: each series group is a sequential chain of its windows in time
order; no chain starts a window more than `lag` windows ahead of the oldest
unfinished one; at most `concurrency` requests are in flight (one per
connection). Client-side ack latency (send → 2xx/OK) is kept per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import grpc
from grpc import aio

GRPC_METHOD = "/metricsflow.v1.Ingest/Write"
GRPC_STREAM_METHOD = "/metricsflow.v1.Ingest/WriteStreamAcked"
GRPC = ("grpc", "grpc_stream")  # unary Write per request; one WriteStreamAcked per connection and tenant
HTTP_PATHS = {"http": "/v1/metrics", "remote_write": "/api/v1/write"}
PROTOCOLS = (*GRPC, *HTTP_PATHS)  # what Client sends: the benchmarks' --protocol choices


def http_headers(protocol: str, tenant: str) -> dict[str, str]:
    h = {"X-Scope-OrgID": tenant, "Content-Type": "application/x-protobuf"}
    if protocol == "remote_write":
        h.update({"Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"})
    return h


@dataclass
class SendStats:
    requests: int = 0
    points: int = 0
    accepted: int = 0
    errors: int = 0
    ack_ms: list[float] = field(default_factory=list)
    ack_started: list[float] = field(default_factory=list)  # perf_counter() when each acked request was sent
    err_samples: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)


class Client:
    """`concurrency` connections to one collector (gRPC channels or one aiohttp pool)."""

    def __init__(self, protocol: str, http_url: str, grpc_target: str, concurrency: int, tenant: str = "default"):
        self.protocol, self.http_url, self.grpc_target = protocol, http_url, grpc_target
        self.concurrency, self.tenant = concurrency, tenant
        self._channels: asyncio.Queue | None = None
        self._session: aiohttp.ClientSession | None = None
        self._chans: list = []

    async def __aenter__(self) -> Client:
        if self.protocol in GRPC:
            self._channels = asyncio.Queue()
            for _ in range(self.concurrency):
                # a distinct channel argument gives each channel its own TCP connection
                ch = aio.insecure_channel(self.grpc_target, options=[
                    ("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)])
                self._chans.append(ch)
                if self.protocol == "grpc":
                    self._channels.put_nowait(ch.unary_unary(GRPC_METHOD, request_serializer=lambda b: b,
                                                             response_deserializer=lambda b: b))
                else:
                    self._channels.put_nowait(_Streams(ch))
        else:
            conn = aiohttp.TCPConnector(limit=self.concurrency)
            self._session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120),
                                                  headers=http_headers(self.protocol, self.tenant))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while self._channels is not None and not self._channels.empty():
            slot = self._channels.get_nowait()
            if isinstance(slot, _Streams):
                await slot.close()
        for ch in self._chans:
            await ch.close()
        if self._session is not None:
            await self._session.close()

    async def post(self, body: bytes, stats: SendStats | None, points: int, tenant: str | None = None) -> bool:
        """One write; True when acknowledged. Latency recorded in stats.ack_ms."""
        t0 = time.perf_counter()
        ok = False
        status = "?"
        detail = ""
        if self.protocol == "grpc":
            assert self._channels is not None
            call = await self._channels.get()
            try:
                await call(body, metadata=(("x-scope-orgid", tenant or self.tenant),), timeout=60)
                ok, status = True, "OK"
            except grpc.RpcError as exc:
                status, detail = str(exc.code()), str(exc.details())
            finally:
                self._channels.put_nowait(call)
        elif self.protocol == "grpc_stream":
            assert self._channels is not None
            streams = await self._channels.get()
            try:
                await streams.write(body, tenant or self.tenant)
                ok, status = True, "OK"
            except grpc.RpcError as exc:
                status, detail = str(exc.code()), str(exc.details())
            finally:
                self._channels.put_nowait(streams)
        else:
            assert self._session is not None
            headers = {"X-Scope-OrgID": tenant} if tenant else None
            try:
                async with self._session.post(self.http_url + HTTP_PATHS[self.protocol], data=body,
                                              headers=headers) as r:
                    txt = await r.read()
                    status = str(r.status)
                    ok = 200 <= r.status < 300
                    if not ok:
                        detail = txt[:300].decode(errors="replace")
            except aiohttp.ClientError as exc:
                status, detail = "client_error", str(exc)
        dt = (time.perf_counter() - t0) * 1000
        if stats is not None:
            stats.requests += 1
            stats.points += points
            stats.status[status] = stats.status.get(status, 0) + 1
            if ok:
                stats.accepted += points
                stats.ack_ms.append(dt)
                stats.ack_started.append(t0)
            else:
                stats.errors += 1
                if len(stats.err_samples) < 3:
                    stats.err_samples.append(f"{status}: {detail}")
        return ok


async def send_chains(client: Client | list[Client], items, n_windows: int, n_groups: int,
                      lag: int = 4) -> SendStats:
    """The anchors' scheduler: per-group chains in time order, bounded look-ahead.

    With a list of clients (several collectors), group g goes to clients[g % len(clients)] and the
    in-flight bound is the sum of their connections.
    """
    clients = client if isinstance(client, list) else [client]
    by_group: list[list] = [[None] * n_windows for _ in range(n_groups)]
    for it in items:
        by_group[it.group][it.window] = it
    done = [0] * n_windows
    state = {"low": 0}
    cond = asyncio.Condition()
    sem = asyncio.Semaphore(sum(c.concurrency for c in clients))
    stats = SendStats()

    async def chain(g: int) -> None:
        for w in range(n_windows):
            async with cond:
                await cond.wait_for(lambda w=w: w <= state["low"] + lag)
            it = by_group[g][w]
            async with sem:
                await clients[g % len(clients)].post(it.body, stats, it.points)
            async with cond:
                done[w] += 1
                while state["low"] < n_windows and done[state["low"]] == n_groups:
                    state["low"] += 1
                cond.notify_all()

    await asyncio.gather(*(chain(g) for g in range(n_groups)))
    return stats


async def send_paced(client: Client, items, rate_pps: float, tenant: str, stop_at: float | None = None) -> SendStats:
    """Items in order at `rate_pps` points/s over `concurrency` connections (steady load)."""
    stats = SendStats()
    queue: asyncio.Queue = asyncio.Queue(maxsize=client.concurrency * 2)
    started = time.perf_counter()

    async def worker() -> None:
        while (it := await queue.get()) is not None:
            await client.post(it.body, stats, it.points, tenant=tenant)

    tasks = [asyncio.create_task(worker()) for _ in range(client.concurrency)]
    queued = 0
    for it in items:
        if stop_at is not None and time.perf_counter() >= stop_at:
            break
        ahead = queued / rate_pps - (time.perf_counter() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
        await queue.put(it)
        queued += it.points
    for _ in tasks:
        await queue.put(None)
    await asyncio.gather(*tasks)
    return stats


class _Streams:
    """The open ``WriteStreamAcked`` calls of one channel, one per tenant (the tenant is the stream's metadata)."""

    def __init__(self, channel) -> None:
        self._channel = channel
        self._calls: dict = {}

    async def write(self, body: bytes, tenant: str) -> None:
        """Send one request and wait for its answer; a failed stream is dropped (the next write opens one).

        Raises ``grpc.RpcError`` as a unary call would: the status the stream ended with.
        """
        call = self._calls.get(tenant)
        if call is None:
            call = self._calls[tenant] = self._channel.stream_stream(
                GRPC_STREAM_METHOD, request_serializer=lambda b: b,
                response_deserializer=lambda b: b)(metadata=(("x-scope-orgid", tenant),))
        try:
            await call.write(body)
            if await call.read() is aio.EOF:  # ended OK without answering (read raises a failed status)
                raise _Ended(grpc.StatusCode.UNKNOWN, "the stream ended without an answer")
        except BaseException:
            self._calls.pop(tenant, None)
            call.cancel()
            raise

    async def close(self) -> None:
        for call in self._calls.values():
            await call.done_writing()
        self._calls.clear()


class _Ended(grpc.RpcError):
    """A stream that ended without failing and without an answer, read as a unary call's error."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details
