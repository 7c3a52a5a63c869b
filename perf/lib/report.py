"""Markdown rows for perf/RESULTS.md from bench_e2e / bench_scaling JSON results.

    python -m perf.lib.report /tmp/mfperf/results/e2e_*.json [/tmp/mfperf/results/scaling.json]
"""

from __future__ import annotations

import json
import sys


def _k(v) -> str:
    return "–" if v is None else f"{v / 1000:,.0f}k" if isinstance(v, (int, float)) and v >= 10_000 else f"{v}"


def e2e_rows(results: list[dict]) -> str:
    hdr = ("| run | points | client encode µs/pt | pts/s wall (acked) | pts/s consumed | pts/CPU-s collector "
           "| pts/CPU-s worker | pts/CPU-s Kafka | pts/CPU-s coll+worker | pts/CPU-s all 3 | ack p50/p99 ms (bulk) "
           "| steady pts/s | steady ack p50/p99 ms | freshness p50/p99 s | B/pt worker dir (live) "
           "| B/pt compacted excl. WAL / chunks | Kafka mf.points B/pt | worker RSS B/series "
           "| /v1/query 1 series p50/p99 ms |")
    sep = "|" + " --- |" * (hdr.count("|") - 1)
    rows = [hdr, sep]
    for r in results:
        i, s, m = r["ingest"], r["storage"], r["memory"]
        st = r.get("steady", {})
        ppc = i["points_per_cpu_s"]
        w = next(k for k in ppc if k.startswith("w"))
        c = next(k for k in ppc if k.startswith("collector"))
        q = r.get("queries", {}).get("one_series", {})
        rows.append("| " + " | ".join([
            f"{r['size']} {r['protocol']} ({r.get('code', {}).get('commit', '?')})",
            f"{r['series']:,} × {r['points'] // r['series']}",
            f"{r['encode']['encode_us_per_point']}", _k(i["points_per_s_wall"]), _k(i["points_per_s_sustained"]),
            _k(ppc[c]), _k(ppc[w]), _k(ppc["kafka"]), f"**{_k(i['points_per_cpu_s_collector_worker'])}**",
            _k(i["points_per_cpu_s_all"]), f"{i['ack_p50_ms']} / {i['ack_p99_ms']}",
            _k(st.get("achieved_pps")), f"{st.get('ack_p50_ms')} / {st.get('ack_p99_ms')}",
            f"{st.get('freshness_p50_s')} / {st.get('freshness_p99_s')}", f"{s['bytes_per_point_total']}",
            f"{s['compacted']['bytes_per_point_excl_wal_table']} / {s['compacted']['bytes_per_point_chunks_only']}",
            f"{s['kafka_points_bytes_per_point']}", f"{m['rss_delta_bytes_per_series']:,}",
            f"{q.get('p50_ms')} / {q.get('p99_ms')}"]) + " |")
    return "\n".join(rows)


def anchor_rows(results: list[dict]) -> str:
    rows = ["| run | anchor | pts/CPU-s (anchor) | B/pt (anchor) | q3 1-series median ms (anchor) "
            "| ratio pts/CPU-s coll+worker | ratio incl. Kafka | ratio B/pt (compacted excl. WAL) | ratio query p50 |",
            "|" + " --- |" * 9]
    for r in results:
        for system, an in r.get("anchors", {}).items():
            ra = r.get("ratios", {})
            rows.append("| " + " | ".join([
                f"{r['size']} {r['protocol']} ({r.get('code', {}).get('commit', '?')})", system,
                _k(an.get("points_per_server_cpu_s")),
                f"{an.get('bytes_per_point')}", f"{an.get('q3_median_ms')}",
                f"{ra.get(f'points_per_cpu_s_collector_worker/{system}')}",
                f"{ra.get(f'points_per_cpu_s_incl_kafka/{system}')}",
                f"{ra.get(f'bytes_per_point_compacted_excl_wal/{system}')}",
                f"{ra.get(f'query_one_series_p50/{system}_q3_median')}"]) + " |")
    return "\n".join(rows)


def scaling_rows(s: dict) -> str:
    rows = ["| workers | collectors | pts/s wall | pts/s consumed | pts/CPU-s collectors | pts/CPU-s workers "
            "| pts/CPU-s Kafka | pts/CPU-s coll+workers | pts/CPU-s all | points per worker |",
            "|" + " --- |" * 10]
    for r in s["runs"]:
        rows.append("| " + " | ".join(str(x) for x in (
            r["workers"], r["collectors"], _k(r["points_per_s_wall"]), _k(r["points_per_s_sustained"]),
            _k(r["points_per_cpu_s_collectors"]), _k(r["points_per_cpu_s_workers"]), _k(r["points_per_cpu_s_kafka"]),
            _k(r["points_per_cpu_s_collectors_workers"]), _k(r["points_per_cpu_s_all"]),
            ", ".join(f"{p / 1e6:.2f}M" for p in r["points_consumed_per_worker"]))) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    docs = [json.load(open(p)) for p in sys.argv[1:]]
    e2e = [d for d in docs if "ingest" in d]
    print(e2e_rows(e2e))
    print()
    print(anchor_rows(e2e))
    for d in docs:
        if d.get("bench") == "scaling":
            print()
            print(scaling_rows(d))
