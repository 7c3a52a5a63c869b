"""The peers' WebSocket channel against real sockets: answers matched by id, the HTTP route as fallback."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.support import serve_app
from web.cluster import PARTITIONS_HEADER, PEER_REQUESTS, Cluster, Partial, PartialRequest
from web.peer_channel import (
    CHANNEL_PATH,
    KINDS,
    ChannelUnavailable,
    PeerAnswer,
    PeerChannel,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
)

REQ = PartialRequest("default", "sum(x)", 0, 60_000, 15_000)


async def _serve(channel: web.RequestHandler | None, post: web.RequestHandler | None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    if channel is not None:
        app.router.add_get(CHANNEL_PATH, channel)
    if post is not None:
        app.router.add_post("/internal/v1/partial", post)
    return await serve_app(app)


async def _local() -> Partial:
    return Partial(b"local", frozenset({0, 1}))


def test_frames_round_trip_and_short_ones_are_refused() -> None:
    assert decode_request(encode_request(7, KINDS["partial"], b"body")) == (7, 2, b"body")
    assert decode_answer(encode_answer(2**32 - 1, PeerAnswer(422, b"{}", "0,3"))) == (2**32 - 1,
                                                                                     PeerAnswer(422, b"{}", "0,3"))
    with pytest.raises(ValueError):
        decode_request(b"\x01\x00")
    with pytest.raises(ValueError):
        decode_answer(encode_answer(1, PeerAnswer(200, b"", "0,1"))[:9])


def test_concurrent_requests_get_their_own_answers_in_any_order() -> None:
    async def channel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        frames = []
        async for msg in ws:
            frames.append(decode_request(msg.data))
            if len(frames) == 3:  # answered last first
                for request_id, _kind, body in reversed(frames):
                    await ws.send_bytes(encode_answer(request_id, PeerAnswer(200, b"re:" + body, "5")))
        return ws

    async def run() -> list[PeerAnswer]:
        runner, url = await _serve(channel, None)
        session = aiohttp.ClientSession()
        peer = PeerChannel(url, lambda: session)
        try:
            events = [asyncio.Event() for _ in range(3)]
            answers = await asyncio.gather(*(peer.request("partial", str(i).encode(), ev, 10.0)
                                             for i, ev in enumerate(events)))
            assert all(ev.is_set() for ev in events)
            return answers
        finally:
            await peer.close()
            await session.close()
            await runner.cleanup()

    assert asyncio.run(run()) == [PeerAnswer(200, f"re:{i}".encode(), "5") for i in range(3)]


def test_a_peer_without_the_channel_is_asked_over_http_and_not_tried_again_at_once() -> None:
    async def post(request: web.Request) -> web.Response:
        return web.Response(body=b"peer", headers={PARTITIONS_HEADER: "2,3"})

    async def run() -> tuple[list[Partial], bool]:
        runner, url = await _serve(None, post)
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {url})  # type: ignore[arg-type]
        try:
            parts = await cluster.gather_partials(REQ, _local, [])
            return parts, cluster._channel(url).usable()
        finally:
            await cluster.close()
            await runner.cleanup()

    http_before = PEER_REQUESTS.labels("http")._value.get()
    parts, usable = asyncio.run(run())
    assert parts[1] == Partial(b"peer", frozenset({2, 3}))
    assert PEER_REQUESTS.labels("http")._value.get() == http_before + 1
    assert not usable  # the failed open is retried only after RETRY_S


def test_a_channel_closed_before_the_answer_falls_back_to_http_and_reopens() -> None:
    opened = []

    async def channel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        opened.append(ws)
        async for msg in ws:
            request_id, _kind, _body = decode_request(msg.data)
            if len(opened) == 1:
                await ws.close()  # the first connection dies with the request unanswered
            else:
                await ws.send_bytes(encode_answer(request_id, PeerAnswer(200, b"by channel", "4")))
        return ws

    async def post(request: web.Request) -> web.Response:
        return web.Response(body=b"by http", headers={PARTITIONS_HEADER: "4"})

    async def run() -> list[bytes]:
        runner, url = await _serve(channel, post)
        cluster = Cluster(None, "http://127.0.0.1:1", lambda: {url})  # type: ignore[arg-type]
        try:
            first = await cluster.gather_partials(REQ, _local, [])
            second = await cluster.gather_partials(REQ, _local, [])
            return [first[1].data, second[1].data]
        finally:
            await cluster.close()
            await runner.cleanup()

    channel_before = PEER_REQUESTS.labels("channel")._value.get()
    assert asyncio.run(run()) == [b"by http", b"by channel"]
    assert len(opened) == 2
    assert PEER_REQUESTS.labels("channel")._value.get() == channel_before + 1


def test_a_request_on_a_closed_channel_is_unavailable() -> None:
    async def channel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    async def run() -> None:
        runner, url = await _serve(channel, None)
        session = aiohttp.ClientSession()
        peer = PeerChannel(url, lambda: session)
        try:
            await peer.request("select", b"{}", asyncio.Event(), 10.0)
        finally:
            await peer.close()
            await session.close()
            await runner.cleanup()

    with pytest.raises(ChannelUnavailable):
        asyncio.run(run())


def test_a_request_that_fails_on_the_peer_is_answered_at_once_and_cuts_wait_only_for_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from tables.storage import QueriesInFlight
    from web import query_api
    from web.views import STORAGE_KEY

    queries = QueriesInFlight()
    during: list[int] = []

    async def boom(_app: web.Application, _body: bytes) -> PeerAnswer:
        during.append(queries.count)
        raise RuntimeError("boom")

    monkeypatch.setitem(query_api._ANSWERS, KINDS["partial"], boom)
    app = web.Application()
    app[STORAGE_KEY] = SimpleNamespace(queries=queries)  # type: ignore[assignment]
    app[query_api.CHANNELS_KEY] = set()
    app.router.add_get(CHANNEL_PATH, query_api.peer_channel)

    async def run() -> tuple[PeerAnswer, int]:
        runner, url = await serve_app(app)
        session = aiohttp.ClientSession()
        peer = PeerChannel(url, lambda: session)
        try:
            answer = await peer.request("partial", b"{}", asyncio.Event(), 10.0)
            return answer, queries.count
        finally:
            await peer.close()
            await session.close()
            await runner.cleanup()

    answer, after = asyncio.run(run())
    assert answer.status == 500 and b"RuntimeError: boom" in answer.body
    assert during == [1] and after == 0  # cuts waited for the frame, not for the open connection
