"""Helpers shared by the end-to-end perf scripts (perf/bench_e2e.py, perf/bench_scaling.py).

procs     — /proc CPU/RSS readers, idle waits, du
stack     — start/stop Kafka, collectors and workers on private ports, by PID
requests  — pre-encoded, time-ordered request bodies (native protobuf, remote_write)
send      — the chain scheduler (anchors' method) over gRPC or HTTP, client-side ack latency
promtext  — scrape a Prometheus /metrics page
"""
