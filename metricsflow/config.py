"""Configuration: one frozen, typed object built once from flags and MF_* variables.

Precedence: command-line flag > MF_* environment variable > default. Deep code is
handed the object (or the part it needs); nothing reads the environment later.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DAY_S = 86_400


def _default_data_dir() -> str:
    return str(Path(os.environ.get("MF_HOME", Path.home() / ".metricsflow")) / "data")


KAFKA_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# zstd's range, its negative "fast" levels included (Kafka's Java producer accepts the same).
ZSTD_LEVELS = (-131072, 22)
WORKER_LOOPS = ("uvloop", "asyncio")
SEGMENT_CODECS = ("raw_decimal", "raw")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of every component; each field maps to ``MF_<FIELD>``."""

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "mf."
    partitions: int = 8
    replication_factor: int = 1
    points_retention_ms: int = 7 * DAY_S * 1000  # recovery horizon of mf.points
    # Producer batch compression (none, gzip, snappy, lz4, zstd). Point batches and segments
    # are raw int64/float64 columns: zstd stores them in 8-12 % of the bytes for ~0.05 µs/point.
    kafka_compression: str = "zstd"
    # zstd level of our producers' batches (aiokafka's own is 3): level -1 writes a point batch in
    # about the bytes of level 3 for 8 % less produce CPU than level 1 (metricsflow/kafka_zstd.py).
    kafka_zstd_level: int = -1
    # Collector
    collector_host: str = "127.0.0.1"
    collector_http_port: int = 8080
    collector_grpc_port: int = 50051
    kafka_ack_timeout_s: float = 2.0  # answer 503 past this (invariant 6)
    # Kafka writes a collector has in flight; requests that arrive meanwhile are written together
    # next, one PointBatch per partition for all of them (a worker pays per message, not per point).
    collector_writes_in_flight: int = 1
    # Like Kafka's linger.ms and batch.size: a write waits up to linger_ms for more requests while it
    # holds fewer than linger_points points. Off by default: at half the bulk maximum it doubled the ack
    # median for no merging; it pays where many partitions make each request's messages small.
    collector_linger_ms: float = 0.0
    collector_linger_points: int = 20_000
    # linger.ms of the collector's Kafka producer. The group commit above hands the producer a whole
    # write's messages in one loop turn (one produce request either way), so a linger only delayed
    # every write: at 2 ms the steady ack median was 6.6-7.5 ms against 4.3-4.5 at 0.
    collector_producer_linger_ms: int = 0
    retry_after_s: int = 2
    max_body_bytes: int = 32 * 1024 * 1024
    max_labels: int = 30
    max_label_name_bytes: int = 256
    max_label_value_bytes: int = 4096
    max_future_ms: int = 10 * 60 * 1000
    max_past_ms: int = 15 * DAY_S * 1000  # the raw retention: older points could never be read
    max_points_per_message: int = 40_000  # keeps an mf.points message under Kafka's 1 MB default
    # PointBatch format the collector writes: 2 codes a write's values as decimal mantissas (the
    # others as float64 exceptions) where that takes at most half the float64 bytes, else as 1; 1
    # keeps float64 always, for workers from before format 2, which refuse it.
    point_batch_format: int = 2
    tenants: tuple[str, ...] = ()  # empty: any syntactically valid tenant is accepted
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Worker
    worker_id: str = "worker-1"
    app_id: str = "metricsflow"
    data_dir: str = field(default_factory=_default_data_dir)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    advertised_url: str = ""  # how other workers reach this one; default http://web_host:web_port
    # The worker's event loop (uvloop, asyncio): uvloop's costs an HTTP request 0.22-0.30 ms of the
    # server's CPU where asyncio's costs 0.43-0.49 (perf/RESULTS.md, "Query latency").
    worker_loop: str = "uvloop"
    standby_replicas: int = 1
    # A busy worker asks the broker to gather this long's worth of its consumed bytes per fetch
    # (agents/consumer_fetch.py): a fetch for every few small messages was ~40 % of its CPU, and
    # each fetch still costs its consumer thread ~0.8 ms whatever it brings (10 → 30: perf/RESULTS.md,
    # "The consumer's fetches"). 0: off.
    fetch_fill_ms: int = 30
    # Every cut appends one segment per series with new points; blocks are compressed and
    # rolled up once, at seal. 5 minutes keeps the head a few minutes of data.
    head_cut_interval_s: float = 300.0
    # How a cut writes segment values: raw_decimal codes the values of a slice of series as decimal
    # mantissas where they all are (tag 5; the changelog's zstd took ~6x less time on them), raw keeps
    # float64 (tag 0), for workers from before tag 5, which cannot read it.
    segment_codec: str = "raw_decimal"
    head_max_points: int = 2_000_000
    block_ms: int = 2 * 3600 * 1000  # raw block; a multiple of every rollup window
    # Seals may use this share of the worker's time (saved up to seal_burst_s): every series
    # crosses a block end at once, and a seal burst held consumption back (tables/storage.py).
    # 0 or less: no bound.
    seal_share: float = 0.1
    seal_burst_s: float = 0.5
    raw_retention_ms: int = 15 * DAY_S * 1000
    rollup_1m_retention_ms: int = 90 * DAY_S * 1000
    rollup_1h_retention_ms: int = 0  # 0 keeps forever
    retention_check_interval_s: float = 300.0
    # Decoded blocks a worker keeps for queries (tables/block_cache.py): folded raw blocks (a 2 h
    # block of 10 s points is ~11.5 KB), and each rollup tier's decoded blocks. A dashboard whose
    # raw reads outgrow the first decodes them again on every refresh (docs/capacity.md, §9).
    block_cache_bytes: int = 64 * 1024 * 1024
    rollup_cache_bytes: int = 32 * 1024 * 1024
    out_of_order_window_ms: int = 3600 * 1000  # older than newest-minus-this is refused and counted
    log_level: str = "info"
    # Alerting
    rules_files: tuple[str, ...] = ()
    alertmanager_urls: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    rules_tenant: str = "default"
    external_url: str = ""
    rule_tick_s: float = 0.5
    # A partial for evaluation time t waits (at most this long) until its partitions have
    # consumed every mf.points record that existed at t: nothing acknowledged before t is missed.
    rule_watermark_wait_s: float = 5.0

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("points")`` → ``mf.points``."""
        return f"{self.topic_prefix}{name}"

    @property
    def worker_url(self) -> str:
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(value: str, target: Any) -> Any:
    if target in (int, "int"):
        return int(value)
    if target in (float, "float"):
        return float(value)
    if target in ("tuple[str, ...]",):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def load_settings(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``MF_*`` variables, then apply non-None ``overrides`` (flags)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(f"MF_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _convert(raw, f.type)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    settings = Settings(**values)
    if settings.kafka_compression not in KAFKA_COMPRESSIONS:
        raise ValueError(f"MF_KAFKA_COMPRESSION={settings.kafka_compression!r}: one of {', '.join(KAFKA_COMPRESSIONS)}")
    if not ZSTD_LEVELS[0] <= settings.kafka_zstd_level <= ZSTD_LEVELS[1]:
        raise ValueError(f"MF_KAFKA_ZSTD_LEVEL={settings.kafka_zstd_level}: between {ZSTD_LEVELS[0]}"
                         f" and {ZSTD_LEVELS[1]}")
    if settings.worker_loop not in WORKER_LOOPS:
        raise ValueError(f"MF_WORKER_LOOP={settings.worker_loop!r}: one of {', '.join(WORKER_LOOPS)}")
    if settings.collector_linger_ms < 0 or settings.collector_linger_points < 0:
        raise ValueError("MF_COLLECTOR_LINGER_MS and MF_COLLECTOR_LINGER_POINTS cannot be negative")
    if settings.collector_producer_linger_ms < 0:
        raise ValueError(f"MF_COLLECTOR_PRODUCER_LINGER_MS={settings.collector_producer_linger_ms}: cannot be negative")
    if settings.segment_codec not in SEGMENT_CODECS:
        raise ValueError(f"MF_SEGMENT_CODEC={settings.segment_codec!r}: one of {', '.join(SEGMENT_CODECS)}")
    if settings.point_batch_format not in (1, 2):
        raise ValueError(f"MF_POINT_BATCH_FORMAT={settings.point_batch_format}: 1 or 2")
    if settings.collector_writes_in_flight < 1:
        raise ValueError(f"MF_COLLECTOR_WRITES_IN_FLIGHT={settings.collector_writes_in_flight}: at least 1")
    return settings
