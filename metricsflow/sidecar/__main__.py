"""``python -m metricsflow.sidecar``: the StatsD sidecar process.

Flags (each with an ``MF_SIDECAR_*`` environment variable as default):
``--listen 127.0.0.1:8125 --collector 127.0.0.1:50051 --flush-interval 10
--tenant default --metrics-port 8126``. SIGTERM/SIGINT flush the current
interval, give the client ``--shutdown-timeout`` seconds to deliver, then exit 0.
Once listening it prints one JSON line with the bound addresses (useful with
port 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from prometheus_client import start_http_server

from metricsflow.sidecar.aggregate import AggregatorLimits
from metricsflow.sidecar.server import Sidecar, SidecarConfig


def split_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{what} {text!r}: want host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"MF_SIDECAR_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metricsflow-sidecar", description="StatsD/DogStatsD → metricsflow collector")
    p.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:8125"), help="UDP host:port (MF_SIDECAR_LISTEN)")
    p.add_argument("--collector", default=_env("COLLECTOR", "127.0.0.1:50051"),
                   help="collector gRPC host:port (MF_SIDECAR_COLLECTOR)")
    p.add_argument("--flush-interval", type=float, default=float(_env("FLUSH_INTERVAL_S", "10")),
                   help="seconds per aggregation interval (MF_SIDECAR_FLUSH_INTERVAL_S)")
    p.add_argument("--tenant", default=_env("TENANT", "default"), help="X-Scope-OrgID (MF_SIDECAR_TENANT)")
    p.add_argument("--metrics-host", default=_env("METRICS_HOST", "127.0.0.1"))
    p.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8126")),
                   help="own /metrics port; 0 = any free port, -1 = none (MF_SIDECAR_METRICS_PORT)")
    p.add_argument("--rcvbuf-bytes", type=int, default=int(_env("RCVBUF_BYTES", str(32 << 20))),
                   help="socket receive buffer to ask for (MF_SIDECAR_RCVBUF_BYTES)")
    p.add_argument("--max-series", type=int, default=int(_env("MAX_SERIES", "100000")),
                   help="series per StatsD type (MF_SIDECAR_MAX_SERIES)")
    p.add_argument("--series-ttl", type=float, default=float(_env("SERIES_TTL_S", "300")),
                   help="forget counters/gauges not updated for this long, s (MF_SIDECAR_SERIES_TTL_S)")
    p.add_argument("--shutdown-timeout", type=float, default=float(_env("SHUTDOWN_TIMEOUT_S", "5")),
                   help="seconds to deliver the last points on exit (MF_SIDECAR_SHUTDOWN_TIMEOUT_S)")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", os.environ.get("MF_LOG_LEVEL", "info")))
    return p


def config_from_args(args: argparse.Namespace) -> SidecarConfig:
    listen_host, listen_port = split_host_port(args.listen, "--listen")
    split_host_port(args.collector, "--collector")
    if args.flush_interval <= 0:
        raise argparse.ArgumentTypeError("--flush-interval must be > 0")
    return SidecarConfig(
        listen_host=listen_host, listen_port=listen_port, collector=args.collector,
        flush_interval_s=args.flush_interval, tenant=args.tenant, metrics_host=args.metrics_host,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port, rcvbuf_bytes=args.rcvbuf_bytes,
        shutdown_timeout_s=args.shutdown_timeout,
        limits=AggregatorLimits(max_series=args.max_series, series_ttl_s=args.series_ttl))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sidecar = Sidecar(config)
    metrics_addr = None
    if config.metrics_port is not None:
        server, _thread = start_http_server(config.metrics_port, config.metrics_host, registry=sidecar.registry)
        metrics_addr = f"{config.metrics_host}:{server.server_port}"

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("metricsflow.sidecar").info("signal %d: flushing and exiting", signum)
        sidecar.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = sidecar.address
    print(json.dumps({"listening": f"{host}:{port}", "metrics": metrics_addr, "collector": config.collector,
                      "rcvbuf_bytes": sidecar.rcvbuf_bytes, "pid": os.getpid()}), flush=True)
    sidecar.serve()
    stats = sidecar.client.stats
    logging.getLogger("metricsflow.sidecar").info(
        "stopped: %d packets, %d points sent, %d dropped", sidecar.packets_received, stats.sent, stats.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
