"""Private protobuf views declared in proto3 field syntax read the wire bytes of the real messages."""

from __future__ import annotations

import pytest

from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.proto_views import views


def test_a_view_reads_the_real_messages_bytes_with_labels_as_raw_fields() -> None:
    (batch_view,) = views("tests.views", {
        "Info": "string tenant = 1; repeated bytes labels = 2; int32 kind = 3; int64 first_seen_ms = 4",
        "Batch": "uint32 format_version = 1; bytes series_ids = 2; repeated Info series = 3",
    }, "Batch")
    labels = [pb.Label(name="__name__", value="up"), pb.Label(name="job", value="api")]
    real = pb.SeriesBatch(format_version=1, series_ids=b"\x01" * 8, series=[
        pb.SeriesInfo(tenant="t", labels=labels, kind=pb.METRIC_KIND_COUNTER, first_seen_ms=-5)])
    got = batch_view.FromString(real.SerializeToString())
    assert (got.format_version, got.series_ids) == (1, b"\x01" * 8)
    (info,) = got.series
    assert (info.tenant, info.kind, info.first_seen_ms) == ("t", pb.METRIC_KIND_COUNTER, -5)
    assert list(info.labels) == [label.SerializeToString() for label in labels]
    assert got.SerializeToString() == real.SerializeToString()


@pytest.mark.parametrize("fields", ["bytes labels", "repeated bytes = 1", "bytes labels = one", "bytes a = 1;;"])
def test_a_field_that_does_not_read_as_proto3_is_refused(fields: str) -> None:
    with pytest.raises(ValueError, match="cannot read field"):
        views("tests.bad", {"M": fields}, "M")
