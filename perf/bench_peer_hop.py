#!/usr/bin/env python3
"""One request to a peer: an HTTP POST against a frame on an open WebSocket (web/peer_channel.py).

    python perf/bench_peer_hop.py [--requests 3000] [--port 46500]

A server process (aiohttp on uvloop, as the worker runs it) answers ``POST /p`` and frames on
``GET /ws`` with 100 bytes; this process (uvloop too) sends the same 90-byte partial request
``--requests`` times each way, one at a time, over one keep-alive session as ``Cluster`` does.
Prints the p50 round trip and this process's CPU per request for each, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from aiohttp import ClientSession, WSMsgType, web

BODY = b'{"tenant":"default","query":"sum(rate(requests_total[5m]))","start":1,"end":2,"step":60000}'


async def serve(port: int) -> None:
    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"x" * 100, headers={"X-MF-Partitions": "0,1,2,3"})

    async def channel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[:4] + b"x" * 100)
        return ws

    app = web.Application()
    app.router.add_post("/p", post)
    app.router.add_get("/ws", channel)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def measure(port: int, requests: int) -> dict[str, dict[str, float]]:
    out = {}
    async with ClientSession() as session:
        lat = []
        cpu0 = time.process_time()
        for _ in range(requests):
            t = time.perf_counter()
            async with session.post(f"http://127.0.0.1:{port}/p", data=BODY) as resp:
                await resp.read()
            lat.append(time.perf_counter() - t)
        out["post"] = {"p50_us": round(statistics.median(lat) * 1e6),
                       "client_cpu_us": round((time.process_time() - cpu0) / requests * 1e6)}
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
        lat = []
        cpu0 = time.process_time()
        for i in range(requests):
            t = time.perf_counter()
            await ws.send_bytes(i.to_bytes(4, "little") + BODY)
            await ws.receive()
            lat.append(time.perf_counter() - t)
        out["websocket_frame"] = {"p50_us": round(statistics.median(lat) * 1e6),
                                  "client_cpu_us": round((time.process_time() - cpu0) / requests * 1e6)}
        await ws.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--port", type=int, default=46500)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import uvloop

    if a.serve:
        uvloop.run(serve(a.port))
        return 0
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(a.port)], stdout=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline().strip() if server.stdout is not None else ""
        if line != "ready":
            raise RuntimeError(f"the server did not start (port {a.port} in use?): {line!r}")
        res = uvloop.run(measure(a.port, a.requests))
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name, r in res.items():
        print(f"{name:16s} round trip p50 {r['p50_us']:5d} us   asking process CPU {r['client_cpu_us']:4d} us/request")
    print(json.dumps({"bench": "peer_hop", "requests": a.requests, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
