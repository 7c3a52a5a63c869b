"""pointbatch.encode_columns writes the same messages as encode_batches for the same runs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.pointbatch import decode_batch, encode_batches, encode_columns


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=20), st.integers(1, 50), st.integers(0, 2**32))
def test_encode_columns_matches_encode_batches(lengths: list[int], max_points: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sids = rng.integers(0, 2**63, len(lengths), dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # top bit too
    ts = rng.integers(0, 2**41, sum(lengths), dtype=np.int64)
    vals = rng.normal(size=sum(lengths))
    runs, at = [], 0
    for sid, n in zip(sids.tolist(), lengths, strict=True):
        runs.append((sid, ts[at:at + n], vals[at:at + n]))
        at += n
    got = encode_columns(sids, np.array(lengths, dtype=np.int64), ts, vals, max_points, 1_764_150_000_000)
    assert got == encode_batches(runs, max_points, 1_764_150_000_000)
    assert all(len(decode_batch(m)) <= max_points for m in got)
    assert sum(len(decode_batch(m)) for m in got) == sum(lengths)
