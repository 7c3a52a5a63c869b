"""Generate the shared cross-language test vectors in proto/vectors/ from the Python implementation.

Every producer, in every language, must compute the same series id and write
the same protobuf bytes (DESIGN invariant 4). The vectors are produced here by
``metricsflow.series_id``, the generated protobuf classes and
``metricsflow.pointbatch``; other languages test against the JSON files
(``examples/go-producer`` does, with ``go test ./...``). The output is
deterministic: no clock, no randomness, stable JSON formatting.

    python scripts/gen_vectors.py           # rewrite proto/vectors/*.json
    python scripts/gen_vectors.py --check   # exit 1 if the files differ from what would be written
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from metricsflow import pointbatch  # noqa: E402
from metricsflow.pb import metricsflow_pb2 as pb  # noqa: E402
from metricsflow.series_id import CANONICAL_FORMAT_VERSION, canonical_bytes, partition_for, series_id  # noqa: E402

VECTOR_DIR = ROOT / "proto" / "vectors"
PARTITION_COUNTS = (8, 12)  # a power of two and not: unsigned-modulo mistakes show up in the second
VECTORS_VERSION = 2  # 2: PointBatch format 2 (so format_version 2 is no longer the unknown one)

# ---------------------------------------------------------------------------------------------------
# series_id.json

Labels = list[tuple[str, str]]

_MANY = [(f"label_{i:02d}", f"value-{i}") for i in range(30)]  # max_labels is 30 by default


def _series_cases() -> list[tuple[str, str, Labels, str | None]]:
    """(name, tenant, labels in the order a producer might hold them, group)."""
    cpu = [("__name__", "cpu_seconds_total"), ("host", "web-1"), ("mode", "idle")]
    perm = [("__name__", "http_requests_total"), ("code", "200"), ("handler", "/api/v1/query"),
            ("method", "GET")]
    return [
        ("metric name only", "default", [("__name__", "up")], None),
        ("typical series", "default", cpu, None),
        ("same labels, other tenant", "acme", cpu, None),
        ("empty tenant (encodes as length 0; collectors never use it)", "", cpu, None),
        ("tenant with dots, dashes, underscores", "team_a.prod-eu", cpu, None),
        ("label order: sorted", "default", perm, "permutation"),
        ("label order: reversed", "default", perm[::-1], "permutation"),
        ("label order: shuffled", "default", [perm[2], perm[0], perm[3], perm[1]], "permutation"),
        ("label order: name last", "default", perm[1:] + perm[:1], "permutation"),
        ("empty value dropped", "default", [("__name__", "up"), ("job", ""), ("instance", "a:9100")],
         "empty-values"),
        ("same series without the empty label", "default", [("__name__", "up"), ("instance", "a:9100")],
         "empty-values"),
        ("only the name survives", "default", [("__name__", "up"), ("a", ""), ("b", ""), ("c", "")], None),
        ("uppercase sorts before lowercase (bytewise)", "default",
         [("__name__", "m"), ("b", "1"), ("B", "2"), ("a", "3"), ("A", "4"), ("_", "5")], None),
        ("name is a prefix of another name", "default",
         [("__name__", "m"), ("ab", "2"), ("a_b", "3"), ("a", "1")], None),
        ("label value swap changes the id (a=1,b=2)", "default", [("__name__", "m"), ("a", "1"), ("b", "2")], None),
        ("label value swap changes the id (a=2,b=1)", "default", [("__name__", "m"), ("a", "2"), ("b", "1")], None),
        ("length prefix prevents concatenation collisions (ab=c)", "default",
         [("__name__", "m"), ("ab", "c")], None),
        ("length prefix prevents concatenation collisions (a=bc)", "default",
         [("__name__", "m"), ("a", "bc")], None),
        ("unicode values (2-, 3- and 4-byte UTF-8)", "default",
         [("__name__", "temperature_celsius"), ("city", "Zürich"), ("site", "東京"), ("mood", "😀")], None),
        ("unicode tenant", "équipe-β", [("__name__", "up")], None),
        ("unicode names: UTF-8 byte order differs from UTF-16 order", "default",
         [("__name__", "m"), ("\U0001f600", "emoji"), ("\uff61", "halfwidth"), ("é", "latin")], None),
        ("combining vs precomposed é are different bytes (no normalisation)", "default",
         [("__name__", "m"), ("name", "e\u0301")], None),
        ("special characters in values", "default",
         [("__name__", "m"), ("path", '/a b/"c",d=e\\f'), ("nl", "line1\nline2\ttab"), ("nul", "a\x00b")], None),
        ("value of 127 bytes (1-byte length)", "default", [("__name__", "m"), ("v", "x" * 127)], None),
        ("value of 128 bytes (2-byte length)", "default", [("__name__", "m"), ("v", "x" * 128)], None),
        ("value of 300 bytes", "default", [("__name__", "m"), ("v", "0123456789" * 30)], None),
        ("value of 16384 bytes (3-byte length)", "default", [("__name__", "m"), ("v", "ab" * 8192)], None),
        ("unicode value longer than 127 bytes, fewer characters", "default",
         [("__name__", "m"), ("v", "ж" * 100)], None),
        ("30 labels", "default", [("__name__", "many_labels"), *_MANY], "many"),
        ("30 labels reversed", "default", [("__name__", "many_labels"), *_MANY[::-1]], "many"),
        ("metric name with colons", "default", [("__name__", "job:http_requests:rate5m"), ("job", "api")], None),
        ("numeric-looking values", "default",
         [("__name__", "m"), ("le", "0.005"), ("quantile", "0.99"), ("code", "007")], None),
    ]


def series_id_doc() -> dict[str, Any]:
    cases = []
    for name, tenant, labels, group in _series_cases():
        as_dict = dict(labels)
        assert len(as_dict) == len(labels), f"duplicate label name in case {name!r}"
        canon = canonical_bytes(tenant, as_dict)
        sid = series_id(tenant, as_dict)
        case: dict[str, Any] = {
            "name": name,
            "tenant": tenant,
            "labels": [[k, v] for k, v in labels],
            "canonical_hex": canon.hex(),
            "series_id": str(sid),
            "series_id_hex": f"{sid:016x}",
            "partitions": {str(p): partition_for(sid, p) for p in PARTITION_COUNTS},
        }
        if group:
            case["group"] = group
        cases.append(case)
    return {
        "description": "Series identity vectors: tenant + labels -> canonical bytes -> series_id -> partition.",
        "vectors_version": VECTORS_VERSION,
        "canonical_format_version": CANONICAL_FORMAT_VERSION,
        "hash": "XXH3-64, seed 0, of the canonical bytes; unsigned 64-bit",
        "partition": "series_id mod partitions, unsigned",
        "generated_by": "scripts/gen_vectors.py",
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------
# write_request.json

def _f64_hex(values: list[float]) -> list[str]:
    """IEEE-754 bit patterns (big-endian hex): exact, including NaN payloads and -0.0."""
    return [struct.pack(">d", v).hex() for v in values]


def _json_float(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


_T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms: fixed, so the bytes never change


def _write_request_cases() -> list[dict[str, Any]]:
    return [
        {"name": "one series, little-endian columns", "tenant": "",
         "series": [{"labels": [["__name__", "cpu_seconds_total"], ["host", "web-1"], ["mode", "idle"]],
                     "kind": 2, "encoding": "columns",
                     "timestamps_ms": [_T0, _T0 + 10_000, _T0 + 20_000],
                     "values": [1.5, 2.25, 1e100]}]},
        {"name": "one series, packed fields, special float values", "tenant": "",
         "series": [{"labels": [["__name__", "room_temperature"], ["room", "kitchen"]],
                     "kind": 1, "encoding": "packed",
                     "timestamps_ms": [_T0, _T0 + 1, _T0 + 2, _T0 + 3, _T0 + 4, _T0 + 5],
                     "values": [21.5, math.nan, math.inf, -math.inf, -0.0, 5e-324]}]},
        {"name": "three series with tenant, columns (what the Go producer writes)", "tenant": "acme",
         "series": [{"labels": [["__name__", "queue_depth"], ["queue", q], ["region", "eu-west"]],
                     "kind": 1, "encoding": "columns",
                     "timestamps_ms": [_T0 + i * 15_000 for i in range(4)],
                     "values": [float(i * 10 + j) for j in range(4)]}
                    for i, q in enumerate(["orders", "emails", "café"])]},
        {"name": "mixed: unsorted labels, empty label value, no kind, packed and columns, negative and "
                 "zero timestamps", "tenant": "default",
         "series": [{"labels": [["zone", "b"], ["__name__", "mixed"], ["unused", ""]],
                     "kind": 0, "encoding": "packed",
                     "timestamps_ms": [-1, 0, 1, 2**53], "values": [-1.0, 0.0, 1.0, 2.0]},
                    {"labels": [["__name__", "mixed"], ["zone", "a"]],
                     "kind": 3, "encoding": "columns",
                     "timestamps_ms": [_T0], "values": [0.1]}]},
        {"name": "hot-path shape: sorted labels, columns, no kind, no tenant (what wire.py writes)", "tenant": "",
         "series": [{"labels": [["__name__", "http_requests_total"], ["code", str(code)], ["job", "api"]],
                     "kind": 0, "encoding": "columns",
                     "timestamps_ms": [_T0 + 1_000 * i for i in range(3)],
                     "values": [float(code * 10 + i) for i in range(3)]} for code in (200, 500)]},
        {"name": "series without samples (only labels)", "tenant": "",
         "series": [{"labels": [["__name__", "no_samples"]], "kind": 0, "encoding": "packed",
                     "timestamps_ms": [], "values": []}]},
        {"name": "empty request with tenant only", "tenant": "default", "series": []},
    ]


def build_write_request(case: dict[str, Any]) -> pb.WriteRequest:
    """The message a case describes, built with the generated classes (the reference encoder)."""
    req = pb.WriteRequest(tenant=case["tenant"])
    for s in case["series"]:
        out = req.series.add(kind=s["kind"])
        for k, v in s["labels"]:
            out.labels.add(name=k, value=v)
        ts = np.asarray(s["timestamps_ms"], dtype=np.int64)
        vals = np.asarray(s["values"], dtype=np.float64)
        if s["encoding"] == "columns":
            out.timestamps_ms_le = ts.astype("<i8").tobytes()
            out.values_le = vals.astype("<f8").tobytes()
        else:
            out.timestamps_ms.extend(ts.tolist())
            out.values.extend(vals.tolist())
    return req


def write_request_doc() -> dict[str, Any]:
    cases = []
    for case in _write_request_cases():
        data = build_write_request(case).SerializeToString(deterministic=True)
        tenant_for_id = case["tenant"] or "default"
        series = []
        for s in case["series"]:
            sid = series_id(tenant_for_id, dict(s["labels"]))
            series.append({
                "labels": s["labels"],
                "kind": s["kind"],
                "encoding": s["encoding"],
                "timestamps_ms": s["timestamps_ms"],
                "values": [_json_float(v) for v in s["values"]],
                "values_f64_hex": _f64_hex(s["values"]),
                "series_id": str(sid),
                "series_id_hex": f"{sid:016x}",
            })
        cases.append({"name": case["name"], "tenant": case["tenant"], "series": series,
                      "bytes_base64": base64.b64encode(data).decode(), "bytes_hex": data.hex()})
    return {
        "description": "metricsflow.v1.WriteRequest messages (proto/metricsflow.proto) with their decoded content.",
        "vectors_version": VECTORS_VERSION,
        "encoding_rules": [
            "fields in field-number order, as every official protobuf encoder writes them",
            "Series.labels in the order listed (a producer may send any order; sorted is recommended)",
            "Label.value omitted when empty (proto3 default), Series.kind omitted when 0, "
            "WriteRequest.tenant omitted when empty",
            "encoding 'columns': timestamps_ms_le (field 4, int64 LE) and values_le (field 5, float64 LE); "
            "encoding 'packed': timestamps_ms (field 2, packed varint) and values (field 3, packed fixed64); "
            "empty packed fields are omitted",
        ],
        "series_id_tenant": "series_id is computed with the request's tenant, or 'default' when it is empty",
        "generated_by": "scripts/gen_vectors.py",
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------
# point_batch.json

def _point_batch_runs() -> list[tuple[str, list[tuple[int, list[int], list[float]]], int]]:
    sid_a = series_id("default", {"__name__": "cpu_seconds_total", "host": "web-1", "mode": "idle"})
    sid_b = series_id("acme", {"__name__": "queue_depth", "queue": "orders", "region": "eu-west"})
    return [
        ("one run", [(sid_a, [_T0, _T0 + 10_000, _T0 + 20_000], [1.5, 2.25, 1e100])], 100),
        ("two runs, special values", [(sid_a, [_T0, _T0 + 1], [math.nan, -0.0]),
                                      (sid_b, [_T0 + 5, _T0 + 6, _T0 + 7], [math.inf, -math.inf, 42.0])], 100),
        ("max_points=4 splits a run across messages", [(sid_a, [_T0 + i for i in range(6)],
                                                        [float(i) for i in range(6)]),
                                                       (sid_b, [_T0], [7.0])], 4),
    ]


_STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]  # Prometheus' stale marker


def _decimal_point_batch_runs() -> list[tuple[str, list[tuple[int, list[int], list[float]]], int, int | None]]:
    """Format 2 cases: (name, runs, max_points, mantissa width written by hand or None for what a
    collector writes, ``pointbatch.decimal_values``)."""
    sid_a = series_id("default", {"__name__": "cpu_usage_user", "host": "web-1"})
    sid_b = series_id("default", {"__name__": "node_network_receive_bytes_total", "device": "eth0"})
    return [
        ("format 2: 2-digit gauges, 2-byte mantissas", [(sid_a, [_T0, _T0 + 10_000, _T0 + 20_000],
                                                         [64.5, 63.97, -0.01])], 100, None),
        ("format 2: whole numbers in 1 byte", [(sid_a, [_T0, _T0 + 1], [0.0, -128.0 + 1]),
                                               (sid_b, [_T0 + 5], [100.0])], 100, None),
        ("format 2: 8-byte mantissas at 1 digit (a valid layout collectors do not write)",
         [(sid_b, [_T0, _T0 + 10_000], [1.5e14, 1.5e14 + 4096.0]), (sid_a, [_T0], [0.5])], 100, 8),
        ("format 2, max_points=2 splits a run across messages", [(sid_a, [_T0 + i for i in range(3)],
                                                                  [0.25, 0.5, 0.75])], 2, None),
        ("format 2 with exceptions: the stale marker, -0.0, a byte counter",
         [(sid_a, [_T0 + 10_000 * i for i in range(8)], [1.5, 1.75, _STALE_NAN, 2.0, -0.0, 2.25, 2.5, 2.75]),
          (sid_b, [_T0 + 10_000 * i for i in range(16)], [float(i * i) for i in range(15)] + [8.9e10])],
         100, None),
    ]


def _invalid_point_batches() -> list[tuple[str, bytes]]:
    good = pb.PointBatch(format_version=1, series_ids=(1).to_bytes(8, "little"),
                         run_lengths=(2).to_bytes(4, "little"),
                         timestamps_ms=struct.pack("<2q", _T0, _T0 + 1), values=struct.pack("<2d", 1.0, 2.0))
    wrong_version = pb.PointBatch()
    wrong_version.CopyFrom(good)
    wrong_version.format_version = 3
    decimal = pb.PointBatch(format_version=2, series_ids=good.series_ids, run_lengths=good.run_lengths,
                            timestamps_ms=good.timestamps_ms, value_mantissas=struct.pack("<2h", 150, 275),
                            value_width=2, value_decimals=2)
    decimal_floats = pb.PointBatch()
    decimal_floats.CopyFrom(decimal)
    decimal_floats.values = good.values
    odd_width = pb.PointBatch()
    odd_width.CopyFrom(decimal)
    odd_width.value_width = 3
    no_width = pb.PointBatch()
    no_width.CopyFrom(decimal)
    no_width.ClearField("value_width")
    many_digits = pb.PointBatch()
    many_digits.CopyFrom(decimal)
    many_digits.value_decimals = 19
    short_mantissas = pb.PointBatch()
    short_mantissas.CopyFrom(decimal)
    short_mantissas.value_mantissas = struct.pack("<h", 150)
    far_exception = pb.PointBatch()
    far_exception.CopyFrom(decimal)
    far_exception.exception_positions = struct.pack("<I", 2)
    far_exception.exception_values = struct.pack("<d", math.nan)
    unpaired_exception = pb.PointBatch()
    unpaired_exception.CopyFrom(far_exception)
    unpaired_exception.exception_positions = struct.pack("<2I", 0, 1)
    short_values = pb.PointBatch()
    short_values.CopyFrom(good)
    short_values.values = struct.pack("<d", 1.0)
    runs_mismatch = pb.PointBatch()
    runs_mismatch.CopyFrom(good)
    runs_mismatch.run_lengths = (3).to_bytes(4, "little")
    ragged = pb.PointBatch()
    ragged.CopyFrom(good)
    ragged.timestamps_ms = good.timestamps_ms[:-1]
    return [
        ("unknown format_version", wrong_version.SerializeToString()),
        ("fewer values than timestamps", short_values.SerializeToString()),
        ("run lengths do not add up to the points", runs_mismatch.SerializeToString()),
        ("column not a multiple of its width", ragged.SerializeToString()),
        ("not a protobuf message", b"\xff\xff\xff\xff"),
        ("format 2 with float64 values", decimal_floats.SerializeToString()),
        ("format 2, value_width 3", odd_width.SerializeToString()),
        ("format 2 without value_width", no_width.SerializeToString()),
        ("format 2, value_decimals above 18", many_digits.SerializeToString()),
        ("format 2, fewer mantissas than timestamps", short_mantissas.SerializeToString()),
        ("format 2, an exception beyond the points", far_exception.SerializeToString()),
        ("format 2, more exception positions than exception values", unpaired_exception.SerializeToString()),
    ]


def point_batch_doc() -> dict[str, Any]:
    produced_at = _T0 + 60_000
    cases = []
    for decimal, (name, runs, max_points, by_hand) in [(False, (*case, None)) for case in _point_batch_runs()] + \
            [(True, case) for case in _decimal_point_batch_runs()]:
        arr_runs = [(sid, np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)) for sid, ts, vals in runs]
        if decimal:
            values = np.concatenate([vals for _, _, vals in arr_runs])
            column = pointbatch.decimal_values(values) if by_hand is None else pointbatch.DecimalValues(
                1, np.rint(values * 10).astype(f"<i{by_hand}"), np.zeros(0, np.int64), np.zeros(0))
            assert column is not None, name
            messages = pointbatch.encode_columns(np.array([sid for sid, _, _ in arr_runs], dtype=np.uint64),
                                                 np.array([ts.size for _, ts, _ in arr_runs]),
                                                 np.concatenate([ts for _, ts, _ in arr_runs]), column, max_points,
                                                 produced_at)
        else:
            messages = pointbatch.encode_batches(arr_runs, max_points, produced_at)
        for i, data in enumerate(messages):
            batch = pointbatch.decode_batch(data)
            values = batch.values.tolist()
            msg = pb.PointBatch.FromString(data)
            cases.append({
                "name": name if len(messages) == 1 else f"{name} ({i + 1} of {len(messages)})",
                "bytes_base64": base64.b64encode(data).decode(),
                "format_version": msg.format_version,
                **({"value_width": msg.value_width, "value_decimals": msg.value_decimals,
                    "exception_positions": np.frombuffer(msg.exception_positions, "<u4").tolist(),
                    "collector_writes": by_hand is None}
                   if decimal else {}),
                "series_ids": [str(int(s)) for s in batch.series_ids],
                "run_lengths": [int(n) for n in batch.run_lengths],
                "timestamps_ms": [int(t) for t in batch.timestamps_ms],
                "values": [_json_float(v) for v in values],
                "values_f64_hex": _f64_hex(values),
                "produced_at_ms": batch.produced_at_ms,
            })
    invalid = [{"name": name, "bytes_base64": base64.b64encode(data).decode(), "error_reason": "bad_point_batch"}
               for name, data in _invalid_point_batches()]
    return {
        "description": "metricsflow.v1.PointBatch values of mf.points (little-endian columns) with decoded columns.",
        "vectors_version": VECTORS_VERSION,
        "columns": {"series_ids": "uint64 LE per run", "run_lengths": "uint32 LE per run",
                    "timestamps_ms": "int64 LE per point", "values": "float64 LE per point (format 1)",
                    "value_mantissas": "format 2: signed LE of value_width bytes per point; value = mantissa / "
                                       "10^value_decimals, a float64 division",
                    "exception_positions": "format 2: uint32 LE per exception, the points whose value is "
                                           "exception_values' (their mantissa is 0)",
                    "exception_values": "format 2: float64 LE per exception"},
        "generated_by": "scripts/gen_vectors.py",
        "cases": cases,
        "invalid": invalid,
    }


# ---------------------------------------------------------------------------------------------------

def _is_leaf(value: Any) -> bool:
    """Printed on one line: scalars, flat dicts, lists of scalars or of scalar lists (label pairs)."""
    if isinstance(value, dict):
        return all(not isinstance(v, (list, dict)) for v in value.values())
    if isinstance(value, list):
        if any(isinstance(v, str) and len(v) > 60 for v in value):  # prose: one item a line
            return False
        return all(not isinstance(v, (list, dict)) or (isinstance(v, list) and _is_leaf(v)) for v in value)
    return True


def _dump(value: Any, indent: int = 0) -> str:
    """Stable, diff-friendly JSON: objects one key a line, short arrays on one line, UTF-8 as is."""
    if _is_leaf(value):
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    return "[\n" + ",\n".join(f"{inner}{_dump(v, indent + 2)}" for v in value) + f"\n{pad}]"


def render() -> dict[str, str]:
    docs = {"series_id.json": series_id_doc(), "write_request.json": write_request_doc(),
            "point_batch.json": point_batch_doc()}
    for doc in docs.values():  # the custom printer must not change a single value
        assert json.loads(_dump(doc)) == doc
    return {name: _dump(doc) + "\n" for name, doc in docs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if proto/vectors/ differs from the output")
    parser.add_argument("--out", type=Path, default=VECTOR_DIR, help="directory to write (default proto/vectors)")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (args.out / name).is_file() or (args.out / name).read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale vectors in {args.out}: {', '.join(stale)}; run scripts/gen_vectors.py", file=sys.stderr)
            return 1
        print(f"vectors in {args.out} are up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
