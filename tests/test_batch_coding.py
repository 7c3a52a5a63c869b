"""A seal codes the blocks of many series together (``codecs.encode_many``,
``rollup.compute_many``, ``rollup.encode_many``): the bytes and floats must be exactly
those of coding each block alone, or a replayed cut would rewrite different chunks."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from metricsflow import codecs, rollup
from metricsflow.codecs import _intcol, decimal_codec
from tests.test_codecs import chunks
from tests.test_rollup_format import EXAMPLES, sample_series


@st.composite
def block_lists(draw: st.DrawFn, series: st.SearchStrategy) -> list[tuple[np.ndarray, np.ndarray]]:
    """Several blocks, often of one length (the vectorised path groups blocks by length)."""
    blocks = draw(st.lists(series, min_size=1, max_size=6))
    if draw(st.booleans()):
        n = min(ts.size for ts, _ in blocks)
        blocks = [(ts[:n], vals[:n]) for ts, vals in blocks]
        if draw(st.booleans()):  # series scraped together share their timestamps
            shared = blocks[0][0]
            blocks = [(shared if draw(st.booleans()) else ts, vals) for ts, vals in blocks]
    if draw(st.booleans()):
        blocks.append((np.zeros(0, np.int64), np.zeros(0)))
    return draw(st.permutations(blocks))


@EXAMPLES
@given(block_lists(chunks()), st.sampled_from(sorted(codecs.CODECS)))
def test_chunks_coded_together_are_the_chunks_coded_alone(blocks: list, codec: str) -> None:
    assert codecs.encode_many(blocks, codec) == [codecs.encode(ts, vals, codec) for ts, vals in blocks]


@EXAMPLES
@given(block_lists(chunks()))
def test_scales_chosen_together_are_the_scales_chosen_alone(blocks: list) -> None:
    rows = [vals for _, vals in blocks if vals.size]
    n = min(v.size for v in rows) if rows else 0
    rows = np.stack([v[:n] for v in rows]) if rows and n else np.zeros((0, 1))
    assert decimal_codec.choose_scales(rows) == [decimal_codec.choose_scale(row) for row in rows]


@EXAMPLES
@given(block_lists(sample_series()), st.sampled_from(sorted(rollup.TIERS_MS.values())), st.data())
def test_rollups_computed_and_coded_together_are_those_of_each_block(blocks: list, window_ms: int,
                                                                     data: st.DataObject) -> None:
    distribution = data.draw(st.lists(st.booleans(), min_size=len(blocks), max_size=len(blocks)))
    together = rollup.compute_many(blocks, window_ms, distribution)
    alone = [rollup.compute(ts, vals, window_ms, d) for (ts, vals), d in zip(blocks, distribution, strict=True)]
    for a, b in zip(alone, together, strict=True):
        for name in ("starts", *rollup.COLUMNS):
            assert a.column(name).tobytes() == b.column(name).tobytes(), name
        assert (a.digests is None) == (b.digests is None)
        if a.digests is not None and b.digests is not None:
            assert [d.to_bytes() for d in a.digests] == [d.to_bytes() for d in b.digests]
    assert rollup.encode_many(together) == [rollup.encode(r) for r in alone]


def test_full_blocks_of_the_load_workload_code_alike() -> None:
    """The seal's common case, past hypothesis's small sizes: 720 points, 120 and 2 windows."""
    rng = np.random.default_rng(7)
    ts = 1_764_000_000_000 + np.arange(720, dtype=np.int64) * 10_000
    blocks = [(ts + i, np.round(50 + rng.normal(0, 1, 720).cumsum(), 2)) for i in range(20)]
    blocks += [(ts, np.cumsum(rng.poisson(5, 720)).astype(np.float64)) for _ in range(5)]
    assert codecs.encode_many(blocks) == [codecs.encode(*b) for b in blocks]
    for window_ms in rollup.TIERS_MS.values():
        together = rollup.compute_many(blocks, window_ms, [False] * len(blocks))
        assert {len(r) for r in together} == {720 * 10_000 // window_ms}
        assert rollup.encode_many(together) == [rollup.encode(rollup.compute(*b, window_ms)) for b in blocks]


def test_distribution_flags_must_match_the_blocks() -> None:
    ts = np.arange(3, dtype=np.int64)
    try:
        rollup.compute_many([(ts, ts * 1.0)], 60_000, [])
    except ValueError as exc:
        assert "1 blocks" in str(exc)
    else:
        raise AssertionError("compute_many accepted 0 flags for 1 block")


@EXAMPLES
@given(st.integers(1, 5), st.integers(0, 40), st.booleans(), st.data())
def test_integer_columns_coded_together_are_those_coded_alone(rows: int, n: int, sparse: bool,
                                                              data: st.DataObject) -> None:
    values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-50, 50), st.sampled_from([0, -(2**63), 4096]))
    kind = data.draw(st.sampled_from(["any", "line", "multiples", "multiples_at_first"]))
    columns = np.array([data.draw(st.lists(values, min_size=n, max_size=n)) for _ in range(rows)],
                       dtype=np.int64).reshape(rows, n)
    if kind == "line" and n:  # exact lines and constants stop at their order
        slope = data.draw(st.integers(-9, 9))
        columns = (np.arange(n, dtype=np.int64) * slope)[None, :] + columns[:, :1]
    elif kind == "multiples":  # a common divisor of the differences
        columns = np.cumsum(columns % 7, axis=1) * 4096
    elif kind == "multiples_at_first":  # the first values share a larger divisor than the rest
        columns = np.cumsum(columns % 7, axis=1) * 4096
        columns[:, :16] *= 2
    assert _intcol.encode_rows(columns, sparse) == [_intcol.encode(row, sparse) for row in columns]


def _min_digits_reference(values: np.ndarray) -> np.ndarray:
    """``decimal_codec._min_digits`` as first written: each k's mantissas and patches by ``_approximate``."""
    digits = np.full(values.size, decimal_codec.MAX_SCALE + 1, dtype=np.int64)
    pending = np.flatnonzero(np.isfinite(values))
    for k in range(decimal_codec.MAX_SCALE + 1):
        _, patch = decimal_codec._approximate(values[pending], k)
        exact, near = decimal_codec._classify(patch)
        digits[pending[exact | near]] = k
        pending = pending[~(exact | near)]
    return digits


@EXAMPLES
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6).map(lambda x: x / 100)
                | st.sampled_from([0.1, 0.2 + 0.1, -0.0, 1e300, 2.0**53, 2.0**53 + 2, 1e-300, -5e-324, -1e-300]),
                max_size=60))
def test_min_digits_are_those_of_the_mantissas_and_patches(values: list[float]) -> None:
    """The digit search divides the rounded float instead of its int64 mantissa: the same digits."""
    column = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(decimal_codec._min_digits(column), _min_digits_reference(column))
