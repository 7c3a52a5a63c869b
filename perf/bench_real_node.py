"""Real data on disk, side by side: Debian's Prometheus scrapes prometheus-node-exporter (and
itself) for a while and remote_writes every sample to a metricsflow collector and to
VictoriaMetrics at once. Afterwards both stores settle (metricsflow: the heads are cut and the
worker stops; VictoriaMetrics: force_flush + force_merge) and the bytes on disk per point are
printed for each, with the split by table. Blocks of the last out-of-order window are still
unsealed (raw segments) when the run ends; they are also reported folded and compressed as
their seal will write them (perf/lib/reencode.py).

    python perf/bench_real_node.py --minutes 60            # the storage issue's measurement
    python perf/bench_real_node.py --minutes 3 --cut-interval 30   # a quick look

Progress is printed every minute; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf.lib import procs, promtext, reencode, rocks  # noqa: E402
from perf.lib.stack import Stack, git_state, python_version, wait_for  # noqa: E402

PROM_CONFIG = string.Template("""\
global:
  scrape_interval: ${self_interval}
  scrape_timeout: 1s
  external_labels:
    replica: bench
scrape_configs:
  - job_name: node
    scrape_interval: ${node_interval}
    static_configs:
      - targets: ["127.0.0.1:${node_port}"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:${prom_port}"]
remote_write:
  - url: http://127.0.0.1:${collector_port}/api/v1/write
    name: metricsflow
    queue_config: {batch_send_deadline: 5s, max_samples_per_send: 2000}
  - url: http://127.0.0.1:${vm_port}/api/v1/write
    name: victoriametrics
    queue_config: {batch_send_deadline: 5s, max_samples_per_send: 2000}
""")


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(p: subprocess.Popen | None, timeout: float = 90) -> None:
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def _get(url: str, timeout: float = 600) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _remote_sent(prom_base: str) -> dict[str, float]:
    """Samples Prometheus has shipped, per remote (prometheus_remote_storage_samples_total)."""
    out: dict[str, float] = {}
    for key, v in promtext.scrape(prom_base + "/metrics").items():
        if key.startswith("prometheus_remote_storage_samples_total{"):
            name = "metricsflow" if 'remote_name="metricsflow"' in key else "victoriametrics"
            out[name] = out.get(name, 0.0) + v
    return out


def _chunk_payload(copy_dir: Path) -> dict[str, int]:
    """Keys and values of the chunks table as stored (codec output + key), from the settled copy."""
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import Rdict

    keys = vals = n = 0
    for db_dir in sorted(copy_dir.rglob("*.db")):
        if not db_dir.is_dir() or "chunks" not in db_dir.name:
            continue
        db = Rdict(str(db_dir), options=RocksDBOptions().as_options())
        for k, v in db.items():
            keys += len(k)
            vals += len(v)
            n += 1
        db.close()
    return {"entries": n, "key_bytes": keys, "value_bytes": vals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="how long Prometheus scrapes and ships")
    ap.add_argument("--node-interval", default="5s", help="scrape interval of prometheus-node-exporter")
    ap.add_argument("--self-interval", default="15s", help="scrape interval of Prometheus itself")
    ap.add_argument("--cut-interval", type=float, default=300.0, help="MF_HEAD_CUT_INTERVAL_S of the worker")
    ap.add_argument("--root", default="/tmp/mf-bench-real-node")
    ap.add_argument("--port-base", type=int, default=41000)
    a = ap.parse_args()

    root = Path(a.root)
    pb = a.port_base
    stack = Stack(root=root, kafka_port=pb + 92, collector_http_base=pb + 80, collector_grpc_base=pb + 51,
                  worker_web_base=pb + 66, cut_interval_s=a.cut_interval, app_id="mfreal", topic_prefix="mfreal.")
    node_port, prom_port, vm_port = pb + 100, pb + 90, pb + 28
    node = prom = vm = None
    result: dict = {"bench": "real_node", "minutes": a.minutes, "node_interval": a.node_interval,
                    "self_interval": a.self_interval, "cut_interval_s": a.cut_interval,
                    "python": python_version(), "git": git_state(), "machine": os.uname().nodename,
                    "cpus": os.cpu_count()}
    try:
        stack.start_kafka()
        collector = stack.start_collector()
        worker = stack.start_worker()
        vm_dir = root / "vm"
        vm = _start(["/usr/bin/victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}",
                     f"-storageDataPath={vm_dir}", "-retentionPeriod=100y"], root / "vm.log")
        node = _start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"],
                      root / "node.log")
        wait_for(lambda: _up(f"http://127.0.0.1:{vm_port}/health"), 60, "victoria-metrics")
        wait_for(lambda: _up(f"http://127.0.0.1:{node_port}/metrics"), 60, "node-exporter")
        cfg = root / "prometheus.yml"
        cfg.write_text(PROM_CONFIG.substitute(
            self_interval=a.self_interval, node_interval=a.node_interval, node_port=node_port,
            prom_port=prom_port, collector_port=collector.url.rsplit(":", 1)[1], vm_port=vm_port))
        prom_base = f"http://127.0.0.1:{prom_port}"
        prom = _start(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={root / 'prom'}",
                       f"--web.listen-address=127.0.0.1:{prom_port}"], root / "prometheus.log")
        wait_for(lambda: _up(prom_base + "/-/ready"), 60, "prometheus")

        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(60.0, max(0.0, end - time.monotonic())))
            sent = _remote_sent(prom_base)
            print(f"[{(time.monotonic() - t0) / 60:5.1f} min] shipped {json.dumps(sent)}", flush=True)
        _stop(prom)  # flushes its remote-write queues first
        prom = None

        def accepted() -> float:
            return promtext.total(promtext.scrape(collector.url + "/metrics"), "mf_collector_points_accepted_total")

        def vm_rows() -> float:
            return promtext.total(promtext.scrape(f"http://127.0.0.1:{vm_port}/metrics"), "vm_rows_inserted_total")

        n = accepted()
        result["points"] = {"metricsflow_accepted": n, "victoriametrics_rows_inserted": vm_rows()}
        print(f"points: {json.dumps(result['points'])}", flush=True)

        # metricsflow settles: every head cut (the timer cuts after --cut-interval), then a clean stop.
        def heads_empty() -> bool:
            return promtext.total(promtext.scrape(worker.url + "/metrics"), "mf_worker_head_points") == 0
        wait_for(heads_empty, a.cut_interval + 180, "worker heads cut")
        worker_metrics = promtext.scrape(worker.url + "/metrics")
        series = promtext.total(worker_metrics, "mf_worker_series")
        segments_written = promtext.total(worker_metrics, "mf_worker_segments_written_total")
        decimal_segments = promtext.total(worker_metrics, "mf_worker_decimal_segments_written_total")
        procs.wait_idle([worker.pid], max_wait=120)
        wdir = stack.worker_dir(worker)
        for p in stack.workers + stack.collectors:
            _stop(p.popen)
        copy = root / "worker_copy"
        rocks.compact_copy(wdir, copy)
        tables = rocks.table_sizes(copy)
        payload = _chunk_payload(copy)
        chunks = tables.get("chunks", {}).get("total", 0)
        raw_and_index = chunks + tables.get("series", {}).get("total", 0)
        everything = sum(t["total"] for t in tables.values())
        result["metricsflow"] = {
            "series": series, "tables": tables, "chunk_payload": payload,
            "bytes_per_point_chunks": round(chunks / n, 3),
            "bytes_per_point_chunks_and_series_index": round(raw_and_index / n, 3),
            "bytes_per_point_codec_output": round(payload["value_bytes"] / n, 3),
            "bytes_per_point_all_tables_incl_rollups": round(everything / n, 3),
            "bytes_per_point_rollup_1m": round(tables.get("rollup_1m", {}).get("total", 0) / n, 3),
            "bytes_per_point_rollup_1h": round(tables.get("rollup_1h", {}).get("total", 0) / n, 3),
            "bytes_per_point_segments": round(tables.get("segments", {}).get("total", 0) / n, 3),
            "segments_written": segments_written,
            "decimal_segments_share": round(decimal_segments / segments_written, 3) if segments_written else None,
            # Blocks still held as raw segments after a short run, folded as their seal will:
            "as_sealed": reencode.measure(copy, ["decimal_sparse"]),
            "kafka_topic_bytes": rocks.kafka_topic_sizes(stack.kafka_dir),
            "note": "settled copy of the worker's RocksDB dirs (flush + compact_range); "
                    "data = .sst + .log of each table",
        }

        vm_base = f"http://127.0.0.1:{vm_port}"
        _get(vm_base + "/internal/force_flush")
        time.sleep(2)
        procs.wait_idle([vm.pid], max_wait=120)
        _get(vm_base + "/internal/force_merge")
        time.sleep(2)
        procs.wait_idle([vm.pid], max_wait=300)
        vm_n = vm_rows()
        vm_total = procs.du(str(vm_dir))
        result["victoriametrics"] = {
            "total_bytes": vm_total, "data_bytes": procs.du(str(vm_dir / "data")),
            "indexdb_bytes": procs.du(str(vm_dir / "indexdb")),
            "bytes_per_point": round(vm_total / vm_n, 3),
            "data_bytes_per_point": round(procs.du(str(vm_dir / "data")) / vm_n, 3),
            "note": "du -sb of -storageDataPath after force_flush + force_merge + idle",
        }
        mf, v = result["metricsflow"], result["victoriametrics"]
        # The goal's figure: raw samples as their seal writes them, plus the series index.
        mf["bytes_per_point_sealed_raw_and_series_index"] = round(
            mf["as_sealed"]["decimal_sparse"]["on_disk_bytes_per_point"]
            + tables.get("series", {}).get("total", 0) / n, 3)
        result["ratio_chunks_and_index_to_vm_total"] = round(
            mf["bytes_per_point_chunks_and_series_index"] / v["bytes_per_point"], 3)
        rows = [
            ("points (metricsflow / VM)", f"{n:,.0f} / {vm_n:,.0f}"),
            ("series", f"{series:,.0f}"),
            ("metricsflow chunks B/pt", mf["bytes_per_point_chunks"]),
            ("metricsflow chunks + series index B/pt", mf["bytes_per_point_chunks_and_series_index"]),
            ("metricsflow codec output B/pt", mf["bytes_per_point_codec_output"]),
            ("metricsflow unsealed segments B/pt", mf["bytes_per_point_segments"]),
            ("metricsflow segments written / decimal share",
             f"{segments_written:,.0f} / {mf['decimal_segments_share']}"),
            ("metricsflow raw, every block sealed B/pt", mf["as_sealed"]["decimal_sparse"]["on_disk_bytes_per_point"]),
            ("metricsflow raw sealed + series index B/pt", mf["bytes_per_point_sealed_raw_and_series_index"]),
            ("metricsflow 1m / 1h rollups B/pt", f"{mf['bytes_per_point_rollup_1m']} / "
                                                 f"{mf['bytes_per_point_rollup_1h']}"),
            ("metricsflow all tables B/pt", mf["bytes_per_point_all_tables_incl_rollups"]),
            ("VictoriaMetrics total B/pt", v["bytes_per_point"]),
            ("VictoriaMetrics data only B/pt", v["data_bytes_per_point"]),
        ]
        print()
        for k, val in rows:
            print(f"  {k:<42} {val}")
        print(json.dumps(result), flush=True)
    finally:
        _stop(prom)
        _stop(node)
        _stop(vm)
        stack.stop_all()
        if os.environ.get("MF_BENCH_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
