"""Cluster.gather_partials against real sockets: answers, a dead peer (warning), a failed query."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web

from metricsflow.errors import BackendUnavailable
from metricsflow.promql import PromQLExecutionError
from tests.support import free_port, serve_app
from web.cluster import PARTITIONS_HEADER, Cluster, Partial, PartialRequest

REQ = PartialRequest("default", "sum(x)", 0, 60_000, 15_000)


async def _serve(handler: web.RequestHandler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/internal/v1/partial", handler)
    return await serve_app(app)


async def _local() -> Partial:
    return Partial(b"local", frozenset({0, 1}))


def test_partials_from_peers_and_a_warning_for_a_dead_one() -> None:
    seen: list[PartialRequest] = []

    async def peer(request: web.Request) -> web.Response:
        seen.append(PartialRequest.decode(await request.read()))
        return web.Response(body=b"peer", headers={PARTITIONS_HEADER: "2,3"})

    async def run() -> tuple[list[Partial], list[str]]:
        runner, url = await _serve(peer)
        dead = f"http://127.0.0.1:{free_port()}"
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {url, dead})  # type: ignore[arg-type]
        warnings: list[str] = []
        try:
            return await cluster.gather_partials(REQ, _local, warnings), warnings
        finally:
            await cluster.close()
            await runner.cleanup()

    parts, warnings = asyncio.run(run())
    assert parts == [Partial(b"local", frozenset({0, 1})), Partial(b"peer", frozenset({2, 3}))]
    assert seen == [REQ]
    assert len(warnings) == 1 and warnings[0].startswith("partial result: peer") and "unreachable" in warnings[0]


def test_without_a_warnings_list_a_dead_peer_is_an_error() -> None:
    async def run() -> None:
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {f"http://127.0.0.1:{free_port()}"})  # type: ignore[arg-type]
        try:
            await cluster.gather_partials(REQ, _local)
        finally:
            await cluster.close()

    with pytest.raises(BackendUnavailable, match="unreachable"):
        asyncio.run(run())


def test_a_query_that_failed_on_the_peer_fails_the_query() -> None:
    async def peer(_request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "errorType": "execution", "error": "too many samples"},
                                 status=422)

    async def run() -> None:
        runner, url = await _serve(peer)
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {url})  # type: ignore[arg-type]
        try:
            await cluster.gather_partials(REQ, _local, [])
        finally:
            await cluster.close()
            await runner.cleanup()

    with pytest.raises(PromQLExecutionError, match="too many samples"):
        asyncio.run(run())


def test_overlapping_answers_make_the_query_path_gather_raw_series_instead() -> None:
    from web.query_api import QueryService

    async def peer(_request: web.Request) -> web.Response:
        return web.Response(body=b"peer", headers={PARTITIONS_HEADER: "1,2"})  # 1: both owners mid-rebalance

    async def run() -> object:
        runner, url = await _serve(peer)
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {url})  # type: ignore[arg-type]
        service = QueryService(cluster)
        service.partial = lambda _req, _timeout=None: _local()  # type: ignore[method-assign]
        try:
            return await service._run_pushdown(REQ, 10.0, [])
        finally:
            await cluster.close()
            await runner.cleanup()
            service.pool.shutdown()

    assert asyncio.run(run()) is None


class _PeerInAThread:
    """A peer answering partials from its own thread: it sees a request even while the caller's loop is held."""

    def __init__(self) -> None:
        self.received = threading.Event()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so later requests go over a pooled connection

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                received.set()
                self.send_response(200)
                self.send_header(PARTITIONS_HEADER, "2")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"peer")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _PeerInAThread:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_peers_requests_are_written_before_the_local_share_holds_the_loop() -> None:
    """The local share blocks the loop (as the storage read does): a request not yet written
    by then would reach the peer only after it, and the peer would start its share late."""
    seen_before_local: list[bool] = []
    with _PeerInAThread() as peer:

        async def blocking_local() -> Partial:
            seen_before_local.append(peer.received.wait(timeout=5))
            return Partial(b"local", frozenset({0}))

        async def run() -> list[Partial]:
            cluster = Cluster(None, "http://127.0.0.1:1", lambda: {peer.url})  # type: ignore[arg-type]
            try:
                parts: list[Partial] = []
                for _ in range(3):  # a fresh connection first, then pooled ones
                    peer.received.clear()
                    parts = await cluster.gather_partials(REQ, blocking_local)
                return parts
            finally:
                await cluster.close()

        parts = asyncio.run(run())
    assert seen_before_local == [True, True, True]
    assert parts == [Partial(b"local", frozenset({0})), Partial(b"peer", frozenset({2}))]
