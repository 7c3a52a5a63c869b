"""The worker's own meta-metrics, served on its /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from metricsflow.heap import GC_PAUSE_BUCKETS, frozen_objects

POINTS_CONSUMED = Counter("mf_worker_points_consumed", "Points read from mf.points and stored")
BATCHES_CONSUMED = Counter("mf_worker_batches_consumed", "mf.points messages processed")
SERIES_CONSUMED = Counter("mf_worker_series_consumed", "mf.series messages processed")
SERIES_INDEXED = Counter("mf_worker_series_indexed", "Series new to the index from mf.series (a record may hold many)")
ERRORS = Counter("mf_worker_errors", "Messages or operations that failed, by reason", ["reason"])
LAG = Gauge("mf_worker_consumer_lag", "Messages behind the end of mf.points, per partition", ["partition"])
FRESHNESS = Histogram("mf_worker_ingest_delay_seconds", "Collector send → worker stored",
                      buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
CUT_SECONDS = Histogram("mf_worker_cut_seconds", "Time to cut one partition's head into chunks",
                        buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30))
BLOCKS_WRITTEN = Counter("mf_worker_blocks_written", "Segments and sealed chunk blocks written by cuts")
SEGMENTS_WRITTEN = Counter("mf_worker_segments_written", "Segments (one cut's points of an unsealed block) written")
DECIMAL_SEGMENTS_WRITTEN = Counter("mf_worker_decimal_segments_written",
                                   "Of the segments written, those with their values as decimal mantissas (chunk tag "
                                   "5, MF_SEGMENT_CODEC=raw_decimal); the others hold float64 values")
BLOCKS_SEALED = Counter("mf_worker_blocks_sealed", "(series, block) folded into one chunk and its rollups")
SEAL_BACKLOG = Gauge("mf_worker_seal_backlog_blocks",
                     "(series, block) past the seal horizon waiting for the seal budget (MF_SEAL_SHARE)")
UNSEALED_BLOCKS = Gauge("mf_worker_unsealed_blocks", "(series, block) held as segments, not sealed yet")
HEAD_POINTS = Gauge("mf_worker_head_points", "Points in the in-memory heads")
SERIES = Gauge("mf_worker_series", "Series indexed on this worker's partitions")
QUERY_CACHE_BYTES = Gauge("mf_worker_query_cache_bytes",
                          "Decoded blocks kept for queries, as counted against MF_BLOCK_CACHE_BYTES and "
                          "MF_ROLLUP_CACHE_BYTES (cache: raw, 1m, 1h)", ["cache"])
QUERY_CACHE_ENTRIES = Gauge("mf_worker_query_cache_entries", "(series, block) entries in the query caches",
                            ["cache"])
QUERY_SECONDS = Histogram("mf_worker_query_seconds", "HTTP query latency by endpoint", ["endpoint"],
                          buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
INGEST_ACCEPTED = Counter("mf_worker_ingest_accepted", "Points from mf.ingest written to mf.points")
INGEST_REJECTED = Counter("mf_worker_ingest_rejected", "Points or messages from mf.ingest refused, by reason",
                          ["reason"])
POINTS_REFUSED = Counter("mf_worker_points_refused", "Points the worker did not store, by reason", ["reason"])
BLOCKS_EXPIRED = Counter("mf_worker_blocks_expired", "Blocks deleted by retention, by tier", ["tier"])
REPLAYED_POINTS = Counter("mf_worker_replayed_points", "Points replayed from mf.points into heads after an assignment")
REPLAY_SECONDS = Histogram("mf_worker_replay_seconds", "Time to replay one partition's head from mf.points",
                           buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
FETCH_MIN_BYTES = Gauge("mf_worker_fetch_min_bytes",
                        "Bytes the broker gathers before it answers a fetch (sized to the consumed rate)")
CONSUMER_PARTITIONS = Gauge("mf_worker_consumer_partitions",
                            "Partitions assigned to the worker's Kafka consumer, by kind (stream: a topic the agents "
                            "consume; standby: a changelog replicated for another worker; changelog: of a table "
                            "this worker owns, paused once recovered) and state (fetched or paused)",
                            ["kind", "state"])
GC_PAUSE = Histogram("mf_worker_gc_pause_seconds",
                     "Garbage collections by generation (2: full); the whole process waits for each",
                     ["generation"], buckets=GC_PAUSE_BUCKETS)
GC_FROZEN = Gauge("mf_worker_gc_frozen_objects",
                  "Objects kept out of full collections (frozen at start and after each rebalance; "
                  "counted when frozen)")
GC_FROZEN.set_function(frozen_objects)
EVENT_LOOP_LAG = Histogram("mf_worker_event_loop_lag_seconds",
                           "How late a 100 ms timer on the worker's event loop wakes: consumption, cuts and "
                           "queries share that loop, so this is how long any of them held it",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
