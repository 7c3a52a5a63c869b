"""One WebSocket per peer for the internal requests of queries (select, partial).

On this machine an HTTP POST to a peer took ~330 µs round trip and ~200 µs of the asking
worker's CPU; a frame on an open WebSocket ~140 µs and ~65 µs (perf/RESULTS.md, "Reads per
partition, one grid per range, shared stamps, a channel per peer"). A channel carries the same
requests as ``POST /internal/v1/<kind>``: a frame holds the kind and the POST body, its answer
the status, the ``X-MF-Partitions`` text and the body.
The HTTP routes stay: a peer without the channel (an older worker during a rolling upgrade)
and a channel that broke are answered over them (``Cluster._post``).

Frames (binary, little-endian):
  request  u32 id, u8 kind (1 select, 2 partial), body
  answer   u32 id, u16 status, u16 n, n bytes of partitions text (ASCII), body
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

CHANNEL_PATH = "/internal/v1/channel"
KINDS = {"select": 1, "partial": 2}
# After a failed connect, requests to that peer go over HTTP this long before the next try.
RETRY_S = 5.0
_REQUEST = struct.Struct("<IB")
_ANSWER = struct.Struct("<IHH")


class ChannelUnavailable(Exception):
    """The channel could not carry the request; the HTTP route may."""


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    """A peer's answer to an internal request, whichever way it came."""

    status: int
    body: bytes
    partitions: str = ""


def encode_request(request_id: int, kind: int, body: bytes) -> bytes:
    return _REQUEST.pack(request_id, kind) + body


def decode_request(frame: bytes) -> tuple[int, int, bytes]:
    """(id, kind, body); ValueError if the frame is too short to hold them."""
    if len(frame) < _REQUEST.size:
        raise ValueError(f"channel request of {len(frame)} bytes")
    request_id, kind = _REQUEST.unpack_from(frame)
    return request_id, kind, frame[_REQUEST.size:]


def encode_answer(request_id: int, answer: PeerAnswer) -> bytes:
    parts = answer.partitions.encode("ascii")
    return _ANSWER.pack(request_id, answer.status, len(parts)) + parts + answer.body


def decode_answer(frame: bytes) -> tuple[int, PeerAnswer]:
    """(id, answer); ValueError if the frame is not one."""
    if len(frame) < _ANSWER.size:
        raise ValueError(f"channel answer of {len(frame)} bytes")
    request_id, status, n = _ANSWER.unpack_from(frame)
    start = _ANSWER.size + n
    if len(frame) < start:
        raise ValueError("channel answer shorter than its partitions text")
    return request_id, PeerAnswer(status, frame[start:], frame[_ANSWER.size:start].decode("ascii"))


class PeerChannel:
    """The asking side of one peer's channel: opened on first use, requests matched to answers by id.

    Concurrent queries share the connection. When it closes, every request still waiting
    fails with ChannelUnavailable and the next request opens a new one (a failed open is
    not tried again for RETRY_S).
    """

    def __init__(self, url: str, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._url = url
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._sending = asyncio.Lock()
        self._waiting: dict[int, asyncio.Future[PeerAnswer]] = {}
        self._ids = itertools.count(1)
        self._retry_at = 0.0

    def usable(self) -> bool:
        """False for RETRY_S after a failed open."""
        return self._ws is not None or time.monotonic() >= self._retry_at

    async def request(self, kind: str, body: bytes, sent: asyncio.Event, timeout_s: float) -> PeerAnswer:
        """The peer's answer; ``sent`` is set once the frame is written.

        ChannelUnavailable when the channel cannot be opened or closes before the answer;
        TimeoutError after ``timeout_s``.
        """
        ws = await self._open()
        request_id = next(self._ids) & 0xFFFFFFFF
        answer: asyncio.Future[PeerAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            try:
                async with self._sending:  # one frame at a time on the connection
                    await ws.send_bytes(encode_request(request_id, KINDS[kind], body))
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                raise ChannelUnavailable(f"channel to {self._url} closed: {exc}") from exc
            finally:
                sent.set()
            if self._ws is not ws:  # closed while the frame went out: its answer will not come
                raise ChannelUnavailable(f"channel to {self._url} closed")
            return await asyncio.wait_for(answer, timeout_s)
        finally:
            self._waiting.pop(request_id, None)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is not None:
            return self._ws
        async with self._opening:
            if self._ws is not None:
                return self._ws
            if time.monotonic() < self._retry_at:
                raise ChannelUnavailable(f"no channel to {self._url} (retried after {RETRY_S:.0f} s)")
            try:
                ws = await self._session().ws_connect(f"{self._url}{CHANNEL_PATH}", max_msg_size=0,
                                                      autoping=True)
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                self._retry_at = time.monotonic() + RETRY_S
                raise ChannelUnavailable(f"no channel to {self._url}: {exc}") from exc
            self._ws = ws
            self._reader = asyncio.create_task(self._read(ws), name=f"peer-channel {self._url}")
            return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = "closed"
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                try:
                    request_id, answer = decode_answer(msg.data)
                except ValueError as exc:
                    reason = f"unreadable answer: {exc}"
                    break
                waiting = self._waiting.get(request_id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except (ConnectionError, aiohttp.ClientError) as exc:
            reason = str(exc)
        finally:
            if self._ws is ws:
                self._ws = None
            # Before the close's await: requests sent meanwhile go over a new connection.
            for waiting in list(self._waiting.values()):
                if not waiting.done():
                    waiting.set_exception(ChannelUnavailable(f"channel to {self._url} {reason}"))
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await ws.close()

    async def close(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws = None
        if ws is not None:
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
