"""Pre-encoded request bodies of the TSBS-like workload, in (window, group) order.

A request is `batch_series` series × `batch_samples` samples (500 × 10 by default,
as in ../shared/anchors/bench.py). Bodies for the native protocol (gRPC
``metricsflow.v1.Ingest/Write`` and HTTP ``/v1/metrics`` with
application/x-protobuf) use ``metricsflow.wire`` with per-series label bytes
encoded once; remote_write bodies are a hand-rolled ``prometheus.WriteRequest``
(label bytes cached per series, samples laid out with numpy) + snappy block.
Value generation is timed apart from encoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cramjam
import numpy as np

from metricsflow.wire import encode_labels, encode_series, encode_write_request, uvarint
from metricsflow.workload import INTERVAL_MS, RandomWalk, series_labels

NATIVE = ("grpc", "grpc_stream", "http")
# The benchmarks' load sizes: hosts (10 series each), points per series.
SIZES = {"S": (100, 720), "M": (1000, 720), "HC": (10_000, 60)}


@dataclass
class Item:
    window: int
    group: int
    body: bytes
    points: int


@dataclass
class Encoded:
    items: list[Item]
    n_windows: int
    n_groups: int
    n_series: int
    n_points: int
    start_ms: int
    end_ms: int
    stats: dict


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + uvarint(len(payload)) + payload


def rw_label_bytes(labels: dict[str, str]) -> bytes:
    """TimeSeries.labels (field 1) of prometheus remote_write, sorted by name."""
    return b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode()))
                    for k, v in sorted(labels.items()))


def _varint_cols(ts: np.ndarray) -> np.ndarray | None:
    """(k, 6) uint8 varints of timestamps that all need exactly 6 bytes (2**35 <= t < 2**42), else None."""
    t = ts.astype(np.uint64)
    if t.size == 0 or t.min() < (1 << 35) or t.max() >= (1 << 42):
        return None
    out = np.empty((t.size, 6), np.uint8)
    for i in range(6):
        out[:, i] = ((t >> np.uint64(7 * i)) & np.uint64(0x7F)).astype(np.uint8)
    out[:, :5] |= 0x80
    return out


def encode_rw_request(label_bytes: list[bytes], ts: np.ndarray, cols: np.ndarray) -> bytes:
    """remote_write WriteRequest for series `label_bytes` × samples (cols: (n_series, k) values), snappy."""
    n, k = cols.shape
    vt = _varint_cols(ts)
    if vt is not None:
        rec = np.empty((n, k, 18), np.uint8)
        rec[:, :, 0] = 0x12  # TimeSeries.samples, length 16
        rec[:, :, 1] = 16
        rec[:, :, 2] = 0x09  # Sample.value (fixed64)
        rec[:, :, 3:11] = np.ascontiguousarray(cols, dtype="<f8").view(np.uint8).reshape(n, k, 8)
        rec[:, :, 11] = 0x10  # Sample.timestamp (varint)
        rec[:, :, 12:18] = vt[None, :, :]
        flat = rec.reshape(n, k * 18)
        parts = []
        for i in range(n):
            ts_msg = label_bytes[i] + flat[i].tobytes()
            parts.append(b"\x0a" + uvarint(len(ts_msg)) + ts_msg)
    else:  # generic (slow) path
        parts = []
        for i in range(n):
            samples = b"".join(_field(0x12, b"\x09" + np.float64(v).astype("<f8").tobytes() + b"\x10" + uvarint(int(t)))
                               for t, v in zip(ts.tolist(), cols[i].tolist(), strict=True))
            ts_msg = label_bytes[i] + samples
            parts.append(b"\x0a" + uvarint(len(ts_msg)) + ts_msg)
    return bytes(cramjam.snappy.compress_raw(b"".join(parts)))


def build(protocol: str, hosts: int, points: int, end_ms: int | None = None, seed: int = 42,
          batch_series: int = 500, batch_samples: int = 10, extra_labels: dict[str, str] | None = None) -> Encoded:
    """All requests of the workload; the last point lies ~20 s before now unless end_ms is given."""
    t0 = time.perf_counter()
    labels = series_labels(hosts, seed)
    if extra_labels:
        labels = [{**lb, **extra_labels} for lb in labels]
    n = len(labels)
    vals = RandomWalk(n, seed).rounds(points)  # (points, n)
    t_gen = time.perf_counter() - t0
    if end_ms is None:
        end_ms = (int(time.time() * 1000) - 20_000) // INTERVAL_MS * INTERVAL_MS
    start_ms = end_ms - (points - 1) * INTERVAL_MS
    ts_all = start_ms + INTERVAL_MS * np.arange(points, dtype=np.int64)
    t1 = time.perf_counter()
    if protocol in NATIVE:
        lbytes = [encode_labels(lb) for lb in labels]
    else:
        lbytes = [rw_label_bytes(lb) for lb in labels]
    t_labels = time.perf_counter() - t1
    items: list[Item] = []
    n_windows = (points + batch_samples - 1) // batch_samples
    n_groups = (n + batch_series - 1) // batch_series
    nbytes = 0
    t2 = time.perf_counter()
    for w in range(n_windows):
        i0, i1 = w * batch_samples, min(points, (w + 1) * batch_samples)
        ts = ts_all[i0:i1]
        block = np.ascontiguousarray(vals[i0:i1].T)  # (n, k)
        for g in range(n_groups):
            s0, s1 = g * batch_series, min(n, (g + 1) * batch_series)
            if protocol in NATIVE:
                body = encode_write_request([encode_series(lbytes[s], ts, block[s]) for s in range(s0, s1)])
            else:
                body = encode_rw_request(lbytes[s0:s1], ts, block[s0:s1])
            nbytes += len(body)
            items.append(Item(w, g, body, (s1 - s0) * (i1 - i0)))
    t_enc = time.perf_counter() - t2
    n_points = n * points
    stats = {
        "protocol": protocol, "series": n, "points": n_points, "requests": len(items),
        "batch": f"{batch_series} series x {batch_samples} samples",
        "value_generation_s": round(t_gen, 3), "label_bytes_s": round(t_labels, 3), "encode_s": round(t_enc, 3),
        "encode_us_per_point": round(t_enc / n_points * 1e6, 3),
        "wire_bytes": nbytes, "wire_bytes_per_point": round(nbytes / n_points, 2),
    }
    return Encoded(items, n_windows, n_groups, n, n_points, start_ms, end_ms, stats)


PROBE_LABELS = {"__name__": "mf_bench_probe", "probe": "freshness"}


def probe_body(protocol: str, ts_ms: int, value: float) -> bytes:
    ts = np.array([ts_ms], np.int64)
    if protocol in NATIVE:
        return encode_write_request([encode_series(encode_labels(PROBE_LABELS), ts, np.array([value]))])
    return encode_rw_request([rw_label_bytes(PROBE_LABELS)], ts, np.array([[value]]))
