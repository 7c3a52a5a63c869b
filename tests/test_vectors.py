"""The Python implementation agrees with the shared cross-language vectors in proto/vectors/.

The vectors are generated from this implementation (scripts/gen_vectors.py), so
these tests catch drift: a change to the canonical form, the hash, the wire
encoding or the PointBatch layout breaks every other language's producer and
must be a deliberate, versioned change. Some checks are independent of the
generator (a from-the-spec canonical encoder, the raw hash of the hex bytes,
groups of equivalent label sets).
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import xxhash

from metricsflow import pointbatch, wire
from metricsflow.errors import InvalidInput
from metricsflow.ingest.native import parse_native
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.series_id import canonical_bytes, partition_for, series_id
from tests.support import REPO

VECTORS = REPO / "proto" / "vectors"


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


SERIES = _load("series_id.json")
WRITE = _load("write_request.json")
BATCH = _load("point_batch.json")


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"][:60] for c in cases]


def _bits(values: np.ndarray) -> list[str]:
    return [struct.pack(">d", v).hex() for v in values.tolist()]


def test_vectors_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_vectors.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vector_files_cover_the_promised_cases() -> None:
    cases = SERIES["cases"]
    assert len(cases) >= 30
    assert any(c["tenant"] != "default" for c in cases)
    assert any(any(v == "" for _, v in c["labels"]) for c in cases), "no empty-value case"
    assert any(any(ord(ch) > 0xFFFF for k, v in c["labels"] for ch in k + v) for c in cases), "no 4-byte UTF-8"
    assert any(len(v.encode()) > 16383 for c in cases for _, v in c["labels"]), "no 3-byte length prefix"
    assert any(len(c["labels"]) >= 30 for c in cases)
    assert any(int(c["series_id"]) >= 2**63 for c in cases), "no id with the top bit set (signed-int trap)"
    encodings = {s["encoding"] for c in WRITE["cases"] for s in c["series"]}
    assert encodings == {"packed", "columns"}
    assert any(c["tenant"] for c in WRITE["cases"])


# --- series id -------------------------------------------------------------------------------------

def _spec_canonical(tenant: str, labels: list[list[str]]) -> bytes:
    """The canonical form written straight from the docstring of metricsflow/series_id.py."""
    def lp(b: bytes) -> bytes:
        return wire.uvarint(len(b)) + b
    kept = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in labels if v != "")
    return lp(tenant.encode("utf-8")) + b"".join(lp(k) + lp(v) for k, v in kept)


@pytest.mark.parametrize("case", SERIES["cases"], ids=_ids(SERIES["cases"]))
def test_series_id_vector(case: dict[str, Any]) -> None:
    labels = dict(case["labels"])
    canon = canonical_bytes(case["tenant"], labels)
    assert canon.hex() == case["canonical_hex"]
    assert _spec_canonical(case["tenant"], case["labels"]) == canon
    sid = series_id(case["tenant"], labels)
    assert str(sid) == case["series_id"]
    assert f"{sid:016x}" == case["series_id_hex"]
    assert xxhash.xxh3_64_intdigest(bytes.fromhex(case["canonical_hex"]), seed=0) == sid
    assert {str(p): partition_for(sid, p) for p in (8, 12)} == case["partitions"]
    assert all(0 <= n < int(p) for p, n in case["partitions"].items())


def test_series_id_groups_and_distinctions() -> None:
    by_group: dict[str, set[str]] = {}
    for c in SERIES["cases"]:
        if "group" in c:
            by_group.setdefault(c["group"], set()).add(c["series_id"])
    assert by_group and all(len(ids) == 1 for ids in by_group.values()), by_group
    named = {c["name"]: c["series_id"] for c in SERIES["cases"]}
    assert named["typical series"] != named["same labels, other tenant"]
    assert (named["label value swap changes the id (a=1,b=2)"]
            != named["label value swap changes the id (a=2,b=1)"])
    assert (named["length prefix prevents concatenation collisions (ab=c)"]
            != named["length prefix prevents concatenation collisions (a=bc)"])


# --- WriteRequest ----------------------------------------------------------------------------------

def _reference_message(case: dict[str, Any]) -> pb.WriteRequest:
    req = pb.WriteRequest(tenant=case["tenant"])
    for s in case["series"]:
        out = req.series.add(kind=s["kind"])
        for k, v in s["labels"]:
            out.labels.add(name=k, value=v)
        ts = np.asarray(s["timestamps_ms"], dtype=np.int64)
        vals = np.array([struct.unpack(">d", bytes.fromhex(h))[0] for h in s["values_f64_hex"]], dtype=np.float64)
        if s["encoding"] == "columns":
            out.timestamps_ms_le, out.values_le = ts.astype("<i8").tobytes(), vals.astype("<f8").tobytes()
        else:
            out.timestamps_ms.extend(ts.tolist())
            out.values.extend(vals.tolist())
    return req


@pytest.mark.parametrize("case", WRITE["cases"], ids=_ids(WRITE["cases"]))
def test_write_request_vector_decodes_to_its_content(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["bytes_base64"])
    assert data.hex() == case["bytes_hex"]
    assert _reference_message(case).SerializeToString() == data
    req = pb.WriteRequest.FromString(data)
    assert req.tenant == case["tenant"]
    assert len(req.series) == len(case["series"])
    tenant = case["tenant"] or "default"
    for got, want in zip(req.series, case["series"], strict=True):
        assert [[lab.name, lab.value] for lab in got.labels] == want["labels"]
        assert int(got.kind) == want["kind"]
        if want["encoding"] == "columns":
            assert not got.timestamps_ms and not got.values
            ts = np.frombuffer(got.timestamps_ms_le, dtype="<i8")
            vals = np.frombuffer(got.values_le, dtype="<f8")
        else:
            assert not got.timestamps_ms_le and not got.values_le
            ts, vals = np.array(got.timestamps_ms, dtype=np.int64), np.array(got.values, dtype=np.float64)
        assert ts.tolist() == want["timestamps_ms"]
        assert _bits(vals) == want["values_f64_hex"]
        assert str(series_id(tenant, dict(want["labels"]))) == want["series_id"]


@pytest.mark.parametrize("case", WRITE["cases"], ids=_ids(WRITE["cases"]))
def test_collector_parser_reads_write_request_vector(case: dict[str, Any]) -> None:
    """parse_native (the collector's and the mf.ingest agent's parser) sees what the vector says."""
    parsed = parse_native(base64.b64decode(case["bytes_base64"]))
    assert parsed.rejections == []
    with_samples = [s for s in case["series"] if s["timestamps_ms"]]
    assert len(parsed.series) == len(with_samples)
    for got, want in zip(parsed.series, with_samples, strict=True):
        assert got.labels == dict(want["labels"])
        assert int(got.kind) == want["kind"]
        assert got.timestamps_ms.tolist() == want["timestamps_ms"]
        assert _bits(got.values) == want["values_f64_hex"]


def _wire_expressible(s: dict[str, Any]) -> bool:
    """wire.py writes columns, sorts labels, always writes Label.value and never writes kind."""
    labels = [tuple(p) for p in s["labels"]]
    return s["encoding"] == "columns" and labels == sorted(labels) and all(v for _, v in labels)


def _wire_series(s: dict[str, Any]) -> bytes:
    vals = np.array([struct.unpack(">d", bytes.fromhex(h))[0] for h in s["values_f64_hex"]])
    return wire.encode_series(wire.encode_labels(dict(s["labels"])), np.asarray(s["timestamps_ms"], dtype=np.int64),
                              vals)


@pytest.mark.parametrize("case", WRITE["cases"], ids=_ids(WRITE["cases"]))
def test_wire_py_encodes_the_same_bytes(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["bytes_base64"])
    ref = pb.WriteRequest.FromString(data)
    checked = 0
    for s, ref_series in zip(case["series"], ref.series, strict=True):
        if not _wire_expressible(s):
            continue
        kind = b"\x30" + wire.uvarint(s["kind"]) if s["kind"] else b""  # Series.kind, field 6 varint
        assert _wire_series(s) + kind == ref_series.SerializeToString()
        checked += 1
    if case["tenant"] == "" and all(_wire_expressible(s) and not s["kind"] for s in case["series"]) and case["series"]:
        assert wire.encode_write_request([_wire_series(s) for s in case["series"]]) == data
        checked += 1
    if not checked:
        pytest.skip("no series in this vector has the shape wire.py writes")


def test_wire_py_whole_request_equality_is_exercised() -> None:
    assert any(c["tenant"] == "" and c["series"] and all(_wire_expressible(s) and not s["kind"] for s in c["series"])
               for c in WRITE["cases"])


@pytest.mark.parametrize("labels", [{"__name__": "m", "empty": ""}, {"": "v", "__name__": "m"}, {"": ""}])
def test_wire_py_writes_protobufs_bytes_for_empty_label_names_and_values(labels: dict[str, str]) -> None:
    """Protobuf writes no field for an empty string, so neither does wire.py: the same bytes
    (collectors refuse an empty name, but the bytes are what the docstring promises)."""
    ts, vals = np.array([1], dtype=np.int64), np.array([1.0])
    ours = wire.encode_write_request([wire.encode_series(wire.encode_labels(labels), ts, vals)])
    ref = pb.WriteRequest()
    s = ref.series.add(timestamps_ms_le=ts.astype("<i8").tobytes(), values_le=vals.astype("<f8").tobytes())
    for k, v in sorted(labels.items()):
        s.labels.add(name=k, value=v)
    assert ours == ref.SerializeToString()


# --- PointBatch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", BATCH["cases"], ids=_ids(BATCH["cases"]))
def test_point_batch_vector_decodes(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["bytes_base64"])
    batch = pointbatch.decode_batch(data)
    assert [str(int(s)) for s in batch.series_ids] == case["series_ids"]
    assert batch.run_lengths.tolist() == case["run_lengths"]
    assert batch.timestamps_ms.tolist() == case["timestamps_ms"]
    assert _bits(batch.values) == case["values_f64_hex"]
    assert batch.produced_at_ms == case["produced_at_ms"]
    msg = pb.PointBatch.FromString(data)
    assert msg.format_version == case["format_version"]
    # Encoding the decoded runs again, as a collector does for its format, gives the same bytes.
    if msg.format_version == pointbatch.DECIMAL_FORMAT_VERSION:
        assert (msg.value_width, msg.value_decimals) == (case["value_width"], case["value_decimals"])
        exceptions = np.frombuffer(msg.exception_positions, "<u4")
        assert exceptions.tolist() == case["exception_positions"]
        mantissas = np.frombuffer(msg.value_mantissas, f"<i{msg.value_width}")
        written = pointbatch.DecimalValues(msg.value_decimals, mantissas, exceptions.astype(np.int64),
                                           np.frombuffer(msg.exception_values, "<f8"))
        found = pointbatch.decimal_values(batch.values)
        if case["collector_writes"]:  # what a collector finds in these values is what the vector holds
            assert found is not None and found.mantissas.tobytes() == written.mantissas.tobytes()
        again = pointbatch.encode_columns(batch.series_ids, batch.run_lengths, batch.timestamps_ms, written,
                                          1_000_000, case["produced_at_ms"])
        assert again == [data]
        return
    runs, at = [], 0
    for sid, n in zip(batch.series_ids.tolist(), batch.run_lengths.tolist(), strict=True):
        runs.append((sid, batch.timestamps_ms[at:at + n], batch.values[at:at + n]))
        at += n
    assert pointbatch.encode_batches(runs, 1_000_000, case["produced_at_ms"]) == [data]


@pytest.mark.parametrize("case", BATCH["invalid"], ids=_ids(BATCH["invalid"]))
def test_invalid_point_batch_vector_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as err:
        pointbatch.decode_batch(base64.b64decode(case["bytes_base64"]))
    assert err.value.reason == case["error_reason"]
