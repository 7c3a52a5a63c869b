"""The ``metricsflow`` command: up, kafka, collector, worker, load, query."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from metricsflow.config import load_settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (MF_KAFKA_BOOTSTRAP)")
    p.add_argument("--partitions", type=int, help="partitions of mf.points/mf.series (MF_PARTITIONS)")
    p.add_argument("--log-level", help="debug|info|warning (MF_LOG_LEVEL)")


def _alerting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", dest="rules_files", action="append", metavar="FILE",
                   help="Prometheus rule file (repeatable; MF_RULES_FILES, comma-separated)")
    p.add_argument("--alertmanager-url", dest="alertmanager_urls", action="append", metavar="URL",
                   help="Alertmanager base URL (repeatable; MF_ALERTMANAGER_URLS)")
    p.add_argument("--webhook-url", dest="webhook_urls", action="append", metavar="URL",
                   help="webhook receiving Alertmanager-shaped payloads (repeatable; MF_WEBHOOK_URLS)")


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    out = {n: getattr(args, n, None) for n in ("kafka_bootstrap", "partitions", "log_level", *names)}
    for n in ("rules_files", "alertmanager_urls", "webhook_urls"):
        if getattr(args, n, None):
            out[n] = tuple(getattr(args, n))
    return out


def _home() -> Path:
    import os

    return Path(os.environ.get("MF_HOME", Path.home() / ".metricsflow"))


def cmd_kafka(args: argparse.Namespace) -> int:
    from metricsflow.stack import kafka

    node = kafka.KafkaNode(Path(args.data_dir), port=args.port, controller_port=args.port + 1)
    if args.action == "start":
        pid = kafka.start(node)
        print(json.dumps({"started": True, "pid": pid, "bootstrap": node.bootstrap}))
    elif args.action == "stop":
        print(json.dumps({"stopped": kafka.stop(node)}))
    else:
        st = kafka.status(node)
        print(json.dumps(st))
        return 0 if st["running"] else 3
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    from metricsflow.collector.main import run

    run(load_settings(_overrides(args, "collector_host", "collector_http_port", "collector_grpc_port",
                                 "kafka_ack_timeout_s")))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from metricsflow.worker_main import run

    run(load_settings(_overrides(args, "worker_id", "data_dir", "web_host", "web_port", "standby_replicas",
                                 "head_cut_interval_s")))
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from metricsflow.sidecar.__main__ import main as sidecar_main

    return sidecar_main(args.agent_args)


def cmd_up(args: argparse.Namespace) -> int:
    from metricsflow.stack.up import run_up

    return run_up(load_settings(_overrides(args)), _home(), args.demo, args.demo_rate, args.demo_hosts)


def cmd_load(args: argparse.Namespace) -> int:
    from metricsflow.load import LoadConfig, run_load

    rate = None if args.rate in ("max", "0") else float(args.rate)
    cfg = LoadConfig(url=args.url, grpc_target=args.grpc, protocol=args.protocol, rate=rate,
                     duration_s=args.duration, hosts=args.hosts, series_per_request=args.series_per_request,
                     samples_per_series=args.samples_per_series, connections=args.connections,
                     tenant=args.tenant, quiet=args.quiet, realtime=args.realtime)
    try:
        summary = asyncio.run(run_load(cfg))
    except KeyboardInterrupt:
        return 130
    print(json.dumps(summary))
    return 0 if summary["points_accepted"] else 1


def cmd_query(args: argparse.Namespace) -> int:
    params = {"query": args.expr}
    for key in ("start", "end", "step", "time"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    path = "/v1/query"
    url = f"{args.url}{path}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, headers={"X-Scope-OrgID": args.tenant})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        print(body.decode(errors="replace"))
        return 1
    print(json.dumps(json.loads(body), indent=None if args.compact else 1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metricsflow", description="metrics collection on Kafka + Faust")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start Kafka, Redis, a worker and a collector; Ctrl-C stops them")
    _common(p)
    p.add_argument("--demo", action="store_true", help="also run the load generator at a modest rate")
    p.add_argument("--demo-rate", type=int, default=1000, help="points/s of the demo load")
    p.add_argument("--demo-hosts", type=int, default=100, help="hosts of the demo load (10 series each)")
    _alerting(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("kafka", help="a single-node KRaft Kafka on 127.0.0.1")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--data-dir", default=str(_home() / "kafka"))
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("collector", help="run a collector in the foreground until SIGTERM")
    _common(p)
    p.add_argument("--host", dest="collector_host")
    p.add_argument("--http-port", dest="collector_http_port", type=int)
    p.add_argument("--grpc-port", dest="collector_grpc_port", type=int)
    p.add_argument("--ack-timeout", dest="kafka_ack_timeout_s", type=float, help="seconds before answering 503")
    p.set_defaults(func=cmd_collector)

    p = sub.add_parser("worker", help="run a Faust worker in the foreground until SIGTERM")
    _common(p)
    p.add_argument("--worker-id", dest="worker_id")
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--web-host", dest="web_host")
    p.add_argument("--web-port", dest="web_port", type=int)
    p.add_argument("--standby-replicas", dest="standby_replicas", type=int)
    p.add_argument("--cut-interval", dest="head_cut_interval_s", type=float, help="seconds between head cuts")
    _alerting(p)
    p.set_defaults(func=cmd_worker)

    for name in ("agent", "sidecar"):
        p = sub.add_parser(name, add_help=False,
                           help="StatsD/DogStatsD sidecar on UDP 127.0.0.1:8125; `metricsflow agent --help` for flags")
        p.set_defaults(func=cmd_agent, agent_args=[])

    p = sub.add_parser("load", help="TSBS-like load against a collector; last line is a JSON summary")
    p.add_argument("--protocol", choices=("grpc", "protobuf", "json"), default="grpc")
    p.add_argument("--rate", default="max", help="points/s, or max")
    p.add_argument("--duration", type=float, default=10.0, help="seconds; 0 runs until interrupted")
    p.add_argument("--hosts", type=int, default=100, help="hosts (10 series each)")
    p.add_argument("--series-per-request", type=int, default=500)
    p.add_argument("--samples-per-series", type=int, default=10)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="collector HTTP base URL")
    p.add_argument("--grpc", default="127.0.0.1:50051", help="collector gRPC address")
    p.add_argument("--tenant", default="default")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--realtime", action="store_true",
                   help="one sample per series per round, stamped now (live dashboards) instead of backfill")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("query", help="query a worker (raw selector, or PromQL with --step)")
    p.add_argument("expr")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--step")
    p.add_argument("--time")
    p.add_argument("--url", default="http://127.0.0.1:6066")
    p.add_argument("--tenant", default="default")
    p.add_argument("--compact", action="store_true")
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("agent", "sidecar"):
        args.agent_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
