"""The collector's own meta-metrics, served on its /metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from metricsflow.heap import GC_PAUSE_BUCKETS, frozen_objects
from metricsflow.ingest import native, remote_write

POINTS_ACCEPTED = Counter("mf_collector_points_accepted", "Points acknowledged by Kafka", ["protocol"])
POINTS_REJECTED = Counter("mf_collector_points_rejected", "Points refused, by reason", ["protocol", "reason"])
REQUESTS = Counter("mf_collector_requests", "Write requests by protocol and outcome", ["protocol", "code"])
SERIES_ANNOUNCED = Counter("mf_collector_series_announced", "New series written to the series topic")
KAFKA_UNAVAILABLE = Counter("mf_collector_kafka_unavailable",
                            "Requests answered 503/UNAVAILABLE because Kafka did not acknowledge in time")
ACK_SECONDS = Histogram("mf_collector_ack_seconds", "Time from request body received (before parsing) to Kafka ack",
                        ["protocol"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5,
                                 1, 2, 5))
KAFKA_WRITE_SECONDS = Histogram("mf_collector_kafka_write_seconds",
                                "Time from handing a write's messages (one or more requests') to the producer"
                                " to Kafka's ack",
                                buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1,
                                         0.25, 0.5, 1, 2, 5))
POINTS_WRITTEN = Counter("mf_collector_points_written",
                         "Points handed to the producer in mf.points messages, by PointBatch format"
                         " (2: the values as decimal mantissas; 1: float64, where those would not take half"
                         " its bytes)", ["format"])
POINTS_WRITTEN_BY_FORMAT = {1: POINTS_WRITTEN.labels(format="1"), 2: POINTS_WRITTEN.labels(format="2")}
VALUE_EXCEPTIONS = Counter("mf_collector_value_exceptions",
                           "Points of format 2 batches whose values went as float64 beside the decimal mantissas"
                           " (NaN, ±Inf, -0.0, more digits than the batch's, mantissas too wide)")
REQUESTS_PER_WRITE = Histogram("mf_collector_requests_per_write",
                               "Requests whose points went to Kafka in one write (one message per partition)",
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64))
GC_PAUSE = Histogram("mf_collector_gc_pause_seconds",
                     "Garbage collections by generation (2: full); the whole process waits for each",
                     ["generation"], buckets=GC_PAUSE_BUCKETS)
GC_FROZEN = Gauge("mf_collector_gc_frozen_objects",
                  "Objects kept out of full collections (frozen at start; counted when frozen)")
GC_FROZEN.set_function(frozen_objects)
KAFKA_CONNECTED = Gauge("mf_collector_kafka_connected", "1 while the Kafka producer is connected")
REQUESTS_REJECTED = Counter("mf_collector_requests_rejected", "Whole requests refused (unreadable body), by reason",
                            ["protocol", "reason"])


class _RequestTemplates:
    """The parsers' request templates (metricsflow/ingest/request_templates.py), read when scraped."""

    def collect(self) -> Iterator[Metric]:
        counts = CounterMetricFamily(
            "mf_collector_request_templates",
            "Requests found whole by a kept template (found), bodies a template did not match (missed: its key is"
            " not templated again), templates made", labels=["parser", "outcome"])
        held = GaugeMetricFamily("mf_collector_request_templates_held", "Templates kept", labels=["parser"])
        size = GaugeMetricFamily("mf_collector_request_templates_bytes", "Bytes the kept templates hold",
                                 labels=["parser"])
        for parser, templates in (("native", native._TEMPLATES), ("remote_write", remote_write._TEMPLATES)):
            for outcome in ("found", "missed", "made"):
                counts.add_metric([parser, outcome], getattr(templates, outcome))
            held.add_metric([parser], len(templates))
            size.add_metric([parser], templates.nbytes)
        yield counts
        yield held
        yield size


REGISTRY.register(_RequestTemplates())
