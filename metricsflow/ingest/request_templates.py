"""A client's steady native request recognised whole, by the bytes around its columns.

A client that sends the same series every interval sends requests that differ only
inside the timestamp and value columns: every tag, length, label and kind byte is the
same. Once such a request has been parsed by ``native._parse_uniform``, its layout is
kept as a template (where each column lies, the labels dicts it was read as); a later
body of the same length whose every other byte equals the template's is that request
again with new samples, so its columns are cut out with two numpy gathers and its
labels are the template's, without a protobuf parse or a label-set probe per series
(that parse and those probes were 15 % of a collector's samples on the M load over gRPC,
py-spy; 520 → 129 µs per 500-series request, perf/RESULTS.md, "A known request found whole").

Byte equality outside the columns means the protobuf parse would be the same: the
columns are length-delimited bytes, so what they hold cannot change how the rest
reads. A template is made only on a request's second sighting (a client whose
requests never repeat pays for none), and a key whose body differed once is not
templated again (two layouts under one key would otherwise rebuild each other).

remote_write (``remote_write._RemoteWriteTemplate``) keeps the same kind of template for a
sender whose every sample is a value and a timestamp of one varint length: the values'
bytes are free, and of each timestamp byte only the low 7 bits, its continuation bit
compared like the rest, so every varint keeps its length (1,762 → 314 µs per 500-series
request in process).
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs._wire import byte_runs
from metricsflow.model import MetricKind, SampleColumns

_I64_LE = np.dtype("<i8")
_F64_LE = np.dtype("<f8")

MIN_SERIES = 16  # fewer series: the per-series parse is about as cheap as a template's fixed costs
MAX_BYTES = 64 << 20  # template bodies and masks kept, all keys together
MAX_KEYS = 8192


class Stamp:
    """A kept body's bytes under a mask: 0xFF bytes must be equal, 0x00 bytes are free, 0x80 bytes
    must be equal in their top bit only (a varint's continuation bit, so its length stays)."""

    __slots__ = ("mask", "rest", "rest_mask", "size", "stamp", "words")

    def __init__(self, body: bytes, mask: np.ndarray) -> None:
        # Compared a word at a time: 8 bytes per step, the few left over one at a time.
        self.size = len(body)
        self.words = self.size >> 3
        self.mask = mask[:self.words * 8].view(np.uint64)
        self.stamp = np.frombuffer(body, dtype=np.uint64, count=self.words) & self.mask
        self.rest_mask = mask[self.words * 8:].copy()
        self.rest = np.frombuffer(body, dtype=np.uint8, offset=self.words * 8) & self.rest_mask

    @staticmethod
    def bytes_for(size: int) -> int:
        """What a stamp of a ``size``-byte body holds: the masked body and its mask."""
        return 2 * size

    @property
    def nbytes(self) -> int:
        return self.bytes_for(self.size)

    def matches(self, body: bytes) -> bool:
        if len(body) != self.size:
            return False
        differs = np.frombuffer(body, dtype=np.uint64, count=self.words) & self.mask
        differs ^= self.stamp
        if differs.any():
            return False
        rest = np.frombuffer(body, dtype=np.uint8, offset=self.words * 8) & self.rest_mask
        return bool(np.array_equal(rest, self.rest))


def free(mask: np.ndarray, starts: np.ndarray, n: int, keep: int = 0) -> None:
    """Set the n bytes of ``mask`` from each of ``starts`` to ``keep``."""
    byte_runs(mask, n)[starts] = bytes([keep]) * n


class KeptRequest:
    """A template: a kept body's ``stamp`` and how a body that matches it is read (``_read``)."""

    __slots__ = ("hits", "stamp")

    @property
    def nbytes(self) -> int:
        return self.stamp.nbytes

    def columns(self, body: bytes) -> SampleColumns | None:
        """The columns of ``body`` when it is this request with other samples; else None."""
        return self._read(body) if self.stamp.matches(body) else None

    def _read(self, body: bytes) -> SampleColumns:
        raise NotImplementedError


class Template(KeptRequest):
    """Where the columns of a known native request lie, and what the rest of it reads as."""

    __slots__ = ("kind", "labels", "n", "points", "tenant", "ts_at", "vs_at")

    def __init__(self, body: bytes, column_starts: np.ndarray, n: int, labels: list[dict[str, str]],
                 kind: MetricKind, tenant: str) -> None:
        """``column_starts``: per series, the offsets in ``body`` of its timestamp and value columns (n bytes each)."""
        mask = np.full(len(body), 0xFF, dtype=np.uint8)
        free(mask, column_starts.reshape(-1), n)
        self.stamp = Stamp(body, mask)
        self.ts_at = np.ascontiguousarray(column_starts[:, 0])
        self.vs_at = np.ascontiguousarray(column_starts[:, 1])
        self.n, self.points = n, n >> 3
        self.labels, self.kind, self.tenant = labels, kind, tenant

    def _read(self, body: bytes) -> SampleColumns:
        runs = byte_runs(body, self.n)
        return SampleColumns(np.full(self.ts_at.size, self.points, dtype=np.int64),
                             runs[self.ts_at].view(_I64_LE).reshape(-1),
                             runs[self.vs_at].view(_F64_LE).reshape(-1))


_SEEN = 1  # a key seen once: the next parse under it makes a template
_UNSTABLE = 2  # a key under which bodies differed outside their columns: never templated


class Templates:
    """Templates by key: the body's length and its bytes up to its first column.

    When the bytes are spent, a new template gets in only in place of templates not found since
    the last sweep, and a sweep waits until the templates held have had as many finds as there
    are of them. Clients that send more distinct requests than fit keep the templates they have
    (dropping them all, as this once did, made a load of 200 request shapes for 167 places parse
    every request in full: 2 of 1,200 found); a client that stopped sending loses its place at
    the next sweep. A template is made with one hit, so it outlives the first sweep after it."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_keys: int = MAX_KEYS) -> None:
        self._by_key: dict[tuple[int, bytes], KeptRequest | int] = {}  # a template or a marker
        self._bytes = 0
        self._held = 0
        self._finds_since_sweep = 0
        self._max_bytes, self._max_keys = max_bytes, max_keys
        # For /metrics: requests found whole, bodies a template did not match, templates made.
        self.found = self.missed = self.made = 0

    def find(self, key: tuple[int, bytes], body: bytes) -> tuple[KeptRequest, SampleColumns] | None:
        """The template ``body`` repeats, with its columns; a template it fails to match is dropped."""
        entry = self._by_key.get(key)
        if entry is None or isinstance(entry, int):
            return None
        columns = entry.columns(body)
        if columns is None:
            self._drop(key, entry, _UNSTABLE)
            self.missed += 1
            return None
        entry.hits += 1
        self._finds_since_sweep += 1
        self.found += 1
        return entry, columns

    def wants(self, key: tuple[int, bytes]) -> bool:
        """Whether a request just parsed under ``key`` should become a template (second sighting,
        and room for a template of its body)."""
        entry = self._by_key.get(key)
        if entry is None:
            if len(self._by_key) >= self._max_keys:
                self.clear()
            self._by_key[key] = _SEEN
            return False
        return entry == _SEEN and self._room(Stamp.bytes_for(key[0]))

    def keep(self, key: tuple[int, bytes], template: KeptRequest) -> None:
        if not self._room(template.nbytes):
            return  # the key stays seen: a later sighting may find room
        template.hits = 1
        self._by_key[key] = template
        self._bytes += template.nbytes
        self._held += 1
        self.made += 1

    def _room(self, nbytes: int) -> bool:
        if self._bytes + nbytes <= self._max_bytes:
            return True
        if nbytes > self._max_bytes or self._finds_since_sweep < self._held:
            return False
        self._finds_since_sweep = 0
        for key, entry in list(self._by_key.items()):
            if isinstance(entry, int):
                continue
            if entry.hits:
                entry.hits = 0
            else:
                self._drop(key, entry, _SEEN)
        return self._bytes + nbytes <= self._max_bytes

    def _drop(self, key: tuple[int, bytes], template: KeptRequest, marker: int) -> None:
        self._by_key[key] = marker
        self._bytes -= template.nbytes
        self._held -= 1

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._by_key.clear()
        self._bytes = self._held = self._finds_since_sweep = 0

    def __len__(self) -> int:
        return self._held


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def field_offsets(body: bytes, number: int) -> list[tuple[int, int]] | None:
    """(start, length) of each length-delimited field ``number`` at the top level of ``body``; None if unreadable."""
    out: list[tuple[int, int]] = []
    pos, end = 0, len(body)
    try:
        while pos < end:
            tag, pos = _varint(body, pos)
            wire = tag & 7
            if wire == 2:
                length, pos = _varint(body, pos)
                if tag >> 3 == number:
                    out.append((pos, length))
                pos += length
            elif wire == 0:
                _, pos = _varint(body, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                return None
    except ValueError:
        return None
    return out if pos == end else None


def series_starts(body: bytes, lengths: np.ndarray) -> np.ndarray | None:
    """Where each top-level field 1 of ``body`` starts, when their sizes are ``lengths``; else None."""
    at = field_offsets(body, 1)
    if at is None or len(at) != lengths.size:
        return None
    spans = np.array(at, dtype=np.int64).reshape(-1, 2)
    return spans[:, 0] if np.array_equal(spans[:, 1], lengths) else None


def first_field(body: bytes, number: int) -> tuple[int, int] | None:
    """(start, length) of the first length-delimited field ``number`` at the top level; None if not found first."""
    pos, end = 0, len(body)
    try:
        while pos < end:
            tag, pos = _varint(body, pos)
            wire = tag & 7
            if wire != 2:
                return None  # the native request's top level has length-delimited fields only
            length, pos = _varint(body, pos)
            if tag >> 3 == number:
                return (pos, length) if pos + length <= end else None
            pos += length
    except ValueError:
        return None
    return None
