"""Label sets known by their raw bytes, shared by the protobuf parsers (native, remote_write).

Clients send the same label sets request after request. A series' labels are
the first fields of its message in both formats (field 1, ``Label {name = 1;
value = 2}``), so the bytes of a series before its samples name its label set:
one slice and one dict probe give the same ``dict`` (and the same strings) as
last time, without a Python object per label. The dicts are shared: nothing
downstream may change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from sys import intern

from google.protobuf.message import DecodeError

from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.proto_views import views
from metricsflow.wire import field

# Label sets whose dict the parsers hand out again: a client that writes more series than
# this between two writes of one series has every series read again, ~25 us each (at 65,536
# the high-cardinality load, 100,000 series, spent 3/4 of the collector's CPU so). Each is
# ~0.85 KB here (its prefix bytes, its dict; names and values interned), ~0.55 KB in the pipeline.
LABEL_SETS_KEPT = 1 << 18
# Labels read from their bytes, whoever's series they are in: a fleet's series share most of
# their labels (a host's tags in each of its metrics, a metric's name on every host), and a
# series seen first cost a protobuf parse, two interns and a field re-encoded per label
# (~15 of the ~29 µs a new series took to parse, the load workload's 11 labels). Emptied when full.
LABELS_KEPT = 1 << 16
_labels: dict[bytes, tuple[str, str, bytes]] = {}  # Label bytes -> (name, value, its label field)


# ``LabelFields``: a series' label fields (field 1) alone, each as its raw bytes.
(_LabelFields,) = views("metricsflow.ingest.label_sets", {"LabelFields": "repeated bytes labels = 1"}, "LabelFields")
_Label = pb.Label


class LabelSets:
    """Raw label encodings of a series → its labels, two ways.

    ``sets`` by a tuple of the serialized ``Label`` messages (which keeps each label's
    boundaries, so two different label lists never share a key). ``by_prefix`` by the
    bytes of a series before its samples (``raw[:len(raw) - size of the samples]``).
    Only a prefix that is nothing but whole label fields, canonically encoded and
    reading as exactly the labels kept, is kept (checked once, in ``remember_prefix``).
    A parser that finds a prefix must still know that no label of the series lies past
    it: native subtracts the least its columns can take, so the rest has no room for a
    label; remote_write steps every field of the series, or compares the label count of
    its strict parse. Bounded: both
    emptied when ``capacity`` sets are known (a miss only decodes again).
    """

    def __init__(self, capacity: int = LABEL_SETS_KEPT) -> None:
        self.sets: dict[tuple[bytes, ...], dict[str, str]] = {}
        self.by_prefix: dict[bytes, dict[str, str]] = {}
        self._capacity = capacity

    def decode(self, raw: tuple[bytes, ...], prefix: bytes | None = None) -> dict[str, str] | None:
        """The labels of ``raw`` (a repeated name keeps its last value), or None if not valid UTF-8.

        Kept by ``prefix`` (the series' bytes before its samples) when that is exactly ``raw``'s
        fields, canonically encoded, and no name repeats (what ``remember_prefix`` checks by
        reading it again); by ``raw`` otherwise. A label set is kept one way, not both."""
        read = read_labels(raw)
        if read is None:
            return None
        labels = {name: value for name, value, _ in read}
        if prefix is not None and len(labels) == len(raw) and prefix == b"".join([f for _, _, f in read]):
            self._keep(prefix, labels)
            return labels
        if len(self.sets) >= self._capacity:
            self.sets.clear()
            self.by_prefix.clear()
        self.sets[raw] = labels
        return labels

    def remember_prefix(self, prefix: bytes, labels: dict[str, str]) -> None:
        """Key ``labels`` by ``prefix`` if ``prefix`` reads as exactly ``labels`` (same items in the same order)."""
        read = _read_prefix(prefix)
        if read is not None and list(read.items()) == list(labels.items()):
            self._keep(prefix, labels)

    def learn_prefix(self, prefix: bytes) -> dict[str, str] | None:
        """The labels of ``prefix``, a series' label fields alone, kept by it; None unless it is some."""
        labels = _read_prefix(prefix)
        if labels is not None:
            self._keep(prefix, labels)
        return labels

    def _keep(self, prefix: bytes, labels: dict[str, str]) -> None:
        if len(self.by_prefix) >= self._capacity:
            self.by_prefix.clear()
        self.by_prefix[prefix] = labels


def _read_label(label: bytes) -> tuple[str, str, bytes]:
    """(name, value, the canonical label field of ``label``); raises DecodeError (invalid UTF-8)."""
    p = _Label.FromString(label)
    if len(_labels) >= LABELS_KEPT:
        _labels.clear()
    # Interned: a label set's dict is kept here and in the collector's caches, and most of
    # its names and values are other series' too (10 metrics of a host: 1.7 -> ~0.6 KB).
    read = _labels[label] = (intern(p.name), intern(p.value), field(0x0A, label))
    return read


def read_labels(raw: Sequence[bytes]) -> list[tuple[str, str, bytes]] | None:
    """Each of the ``Label`` messages ``raw`` read (``_labels``), or None if one is not valid UTF-8."""
    try:
        return [_labels[label] for label in raw]
    except KeyError:
        pass
    try:
        return [_labels.get(label) or _read_label(label) for label in raw]
    except DecodeError:
        return None


def _read_prefix(prefix: bytes) -> dict[str, str] | None:
    """The labels of ``prefix`` if it is whole label fields, canonically encoded, valid UTF-8, no name twice."""
    try:
        raw = _LabelFields.FromString(prefix).labels
    except DecodeError:
        return None
    read = read_labels(raw)
    # Exactly its label fields re-encoded: nothing else (unknown fields), no longer varint than needed.
    if read is None or b"".join([f for _, _, f in read]) != prefix:
        return None
    labels = {name: value for name, value, _ in read}
    return labels if len(labels) == len(read) else None


LABELS = LabelSets()
