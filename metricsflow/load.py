"""``metricsflow load``: the TSBS-like workload against a collector, with a progress line.

Requests are generated ahead of sending in small chunks by one task, and sent by
``--connections`` tasks, so the generator's own cost shows up separately in the
summary (``encode_s``). The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import orjson

from metricsflow.wire import encode_labels, encode_series, encode_write_request
from metricsflow.workload import INTERVAL_MS, RandomWalk, series_labels

PAST_LIMIT_MS = 14 * 86_400_000  # inside the collector's default 15-day accept window


@dataclass
class LoadConfig:
    url: str = "http://127.0.0.1:8080"
    grpc_target: str = "127.0.0.1:50051"
    protocol: str = "grpc"  # grpc | protobuf | json
    rate: float | None = None  # points/s; None = as fast as possible
    duration_s: float = 10.0  # 0 = until interrupted
    hosts: int = 100
    series_per_request: int = 500
    samples_per_series: int = 10
    connections: int = 4
    tenant: str = "default"
    seed: int = 42
    quiet: bool = False
    realtime: bool = False  # stamp every round with the wall clock instead of running ahead in data time


@dataclass
class LoadStats:
    points_sent: int = 0
    points_accepted: int = 0
    points_rejected: int = 0
    requests: int = 0
    errors: int = 0
    encode_s: float = 0.0
    ack_ms: list[float] = field(default_factory=list)
    last_error: str = ""


class RequestSource:
    """Yields (body, points) for successive request groups, in time order per series."""

    def __init__(self, cfg: LoadConfig, start_ms: int) -> None:
        self.cfg = cfg
        self.labels = series_labels(cfg.hosts, cfg.seed)
        self.label_bytes = [encode_labels(lb) for lb in self.labels]
        self.walk = RandomWalk(len(self.labels), cfg.seed)
        self.next_ms = start_ms
        self.n = len(self.labels)

    def round_group(self) -> list[tuple[bytes, int]]:
        """All series × samples_per_series rounds, cut into requests of series_per_request series."""
        k = self.cfg.samples_per_series
        if self.cfg.realtime:
            k = 1
            self.next_ms = max(self.next_ms, int(time.time() * 1000))
        ts = self.next_ms + INTERVAL_MS * np.arange(k, dtype=np.int64)
        vals = self.walk.rounds(k)  # (k, n)
        self.next_ms += 1 if self.cfg.realtime else k * INTERVAL_MS
        out = []
        for lo in range(0, self.n, self.cfg.series_per_request):
            hi = min(self.n, lo + self.cfg.series_per_request)
            out.append((self._encode(lo, hi, ts, vals), (hi - lo) * k))
        return out

    def _encode(self, lo: int, hi: int, ts: np.ndarray, vals: np.ndarray) -> bytes:
        proto = self.cfg.protocol
        if proto in ("grpc", "protobuf"):
            cols = np.ascontiguousarray(vals[:, lo:hi].T)
            return encode_write_request([encode_series(self.label_bytes[i], ts, cols[i - lo]) for i in range(lo, hi)])
        metrics = []
        ts_list = ts.tolist()
        for i in range(lo, hi):
            lb = self.labels[i]
            tags = {k: v for k, v in lb.items() if k != "__name__"}
            for t, v in zip(ts_list, vals[:, i].tolist(), strict=True):
                metrics.append({"metric_name": lb["__name__"], "timestamp": t, "value": v, "tags": tags})
        return orjson.dumps({"metrics": metrics})


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


async def _sender_http(cfg: LoadConfig, queue: asyncio.Queue, stats: LoadStats) -> None:
    ctype = "application/json" if cfg.protocol == "json" else "application/x-protobuf"
    headers = {"Content-Type": ctype, "X-Scope-OrgID": cfg.tenant}
    async with aiohttp.ClientSession(headers=headers) as session:
        while (item := await queue.get()) is not None:
            body, points = item
            started = time.perf_counter()
            try:
                async with session.post(f"{cfg.url}/v1/metrics", data=body) as resp:
                    payload = await resp.read()
                    stats.ack_ms.append((time.perf_counter() - started) * 1000)
                    _account(stats, points, resp.status, payload)
            except aiohttp.ClientError as exc:
                stats.errors += 1
                stats.last_error = str(exc)
                stats.points_sent += points


def _account(stats: LoadStats, points: int, status: int, payload: bytes) -> None:
    stats.requests += 1
    stats.points_sent += points
    if status in (200, 202, 204):
        try:
            doc = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            doc = {}
        stats.points_accepted += int(doc.get("accepted", points))
        stats.points_rejected += int(doc.get("rejected", 0))
    else:
        stats.errors += 1
        stats.last_error = f"HTTP {status}: {payload[:200]!r}"


async def _sender_grpc(cfg: LoadConfig, queue: asyncio.Queue, stats: LoadStats) -> None:
    """One connection: the client SDK's gRPC transport (a WriteStreamAcked stream, a request at a time)."""
    from metricsflow.client.transport import AsyncGrpcTransport
    from metricsflow.errors import MetricsflowError

    transport = AsyncGrpcTransport(cfg.grpc_target, cfg.tenant)
    try:
        while (item := await queue.get()) is not None:
            body, points = item
            started = time.perf_counter()
            stats.requests += 1
            stats.points_sent += points
            try:
                outcome = await transport.send(body, points, 30)
            except MetricsflowError as exc:
                stats.errors += 1
                stats.last_error = str(exc)
                continue
            stats.ack_ms.append((time.perf_counter() - started) * 1000)
            stats.points_accepted += outcome.accepted
            stats.points_rejected += outcome.rejected
    finally:
        await transport.close()


def _progress(stats: LoadStats, started: float, final: bool = False) -> None:
    elapsed = max(1e-9, time.perf_counter() - started)
    line = (f"\rsent {stats.points_sent:>12,} pts  accepted {stats.points_accepted:>12,}  "
            f"{stats.points_sent / elapsed:>10,.0f} pts/s  errors {stats.errors}  {elapsed:6.1f}s")
    sys.stderr.write(line + ("\n" if final else ""))
    sys.stderr.flush()


async def run_load(cfg: LoadConfig) -> dict[str, object]:
    n_series = cfg.hosts * 10
    now = int(time.time() * 1000)
    # Data time runs ahead of wall time when sending faster than real time, so start in the past
    # far enough that the run ends near "now" (the collector refuses points >10 min ahead).
    if cfg.realtime:
        span_ms = 0
    elif cfg.rate and cfg.duration_s:
        rounds = cfg.rate * cfg.duration_s / n_series
        span_ms = int(min(PAST_LIMIT_MS, (rounds + cfg.samples_per_series) * INTERVAL_MS))
    else:
        span_ms = PAST_LIMIT_MS
    start_ms = (now - span_ms) // INTERVAL_MS * INTERVAL_MS
    source = RequestSource(cfg, start_ms)
    stats = LoadStats()
    queue: asyncio.Queue = asyncio.Queue(maxsize=cfg.connections * 4)
    sender = _sender_grpc if cfg.protocol == "grpc" else _sender_http
    senders = [asyncio.create_task(sender(cfg, queue, stats)) for _ in range(cfg.connections)]
    started = time.perf_counter()
    last_progress = started
    queued = 0
    try:
        while True:
            elapsed = time.perf_counter() - started
            if cfg.duration_s and elapsed >= cfg.duration_s:
                break
            if source.next_ms > int(time.time() * 1000) + 5 * 60_000:
                break  # reached the present: more would be refused as too far in the future
            t0 = time.perf_counter()
            group = source.round_group()
            stats.encode_s += time.perf_counter() - t0
            for body, points in group:
                if cfg.rate:
                    ahead = queued / cfg.rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                await queue.put((body, points))
                queued += points
            if not cfg.quiet and time.perf_counter() - last_progress >= 1.0:
                _progress(stats, started)
                last_progress = time.perf_counter()
    finally:
        for _ in senders:
            await queue.put(None)
        await asyncio.gather(*senders, return_exceptions=True)
    wall = time.perf_counter() - started
    if not cfg.quiet:
        _progress(stats, started, final=True)
    return {
        "protocol": cfg.protocol,
        "points_sent": stats.points_sent,
        "points_accepted": stats.points_accepted,
        "points_rejected": stats.points_rejected,
        "points_per_s": round(stats.points_accepted / wall, 1) if wall else 0.0,
        "ack_p50_ms": round(percentile(stats.ack_ms, 50), 2),
        "ack_p99_ms": round(percentile(stats.ack_ms, 99), 2),
        "requests": stats.requests,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "series": n_series,
        "duration_s": round(wall, 2),
        "encode_s": round(stats.encode_s, 3),
    }
