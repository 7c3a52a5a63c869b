"""Rollup block format: golden blocks of every version keep decoding, exact round trips.

``decode(encode(r))`` must return every column bit for bit (NaN payloads, -0.0,
+-Inf, subnormals), the window starts exactly and the digests unchanged, for any
``Rollup``: the ones ``compute`` makes and hand-built ones with irregular starts and
special floats. Bounded to ~100 examples per property (MF_FUZZ_EXAMPLES raises it).

``tests/fixtures/rollup/golden_v1.txt`` holds blocks written by format version 1
(zstd of raw float64 columns) before version 2 existed; it is never regenerated.
``golden_v2.txt`` holds current blocks; regenerate it only for a deliberate change
of version 2's encoder with ``python -m tests.test_rollup_format --regen``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricsflow import packed_ints, rollup, rollup_codec
from metricsflow.codecs._wire import Reader, uvarint, zigzag
from metricsflow.errors import InvalidInput
from metricsflow.model import STALE_NAN_BITS

FIXTURES = Path(__file__).parent / "fixtures" / "rollup"
EXAMPLES = settings(
    max_examples=int(os.environ.get("MF_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0_MS = 1_764_000_000_000
SPECIAL_BITS = [
    STALE_NAN_BITS,
    0x7FF8000000000000,  # quiet NaN
    0xFFF8000000000001,  # negative NaN with payload
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000001,  # smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # max float
]


def floats_from_bits(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint64).view(np.float64)


def _lcg(seed: int, n: int) -> list[int]:
    """Deterministic 31-bit pseudo-random ints, independent of numpy's generators."""
    out, x = [], seed
    for _ in range(n):
        x = (1103515245 * x + 12345) % 2**31
        out.append(x)
    return out


def _specials() -> rollup.Rollup:
    """Every column full of special floats, irregular starts: only exactness can pass."""
    n = len(SPECIAL_BITS)
    cols = [floats_from_bits(SPECIAL_BITS[i:] + SPECIAL_BITS[:i]) for i in range(len(rollup.COLUMNS))]
    starts = T0_MS + 60_000 * np.array([0, 1, 3, 4, 9, 10, 11, 50], dtype=np.int64)[:n]
    return rollup.Rollup(60_000, starts, *cols)


def golden_inputs() -> dict[str, rollup.Rollup]:
    """Rollups of inputs built from integers and correctly rounded divisions only."""
    r = _lcg(11, 720)
    ts = T0_MS + 10_000 * np.arange(720, dtype=np.int64)
    walk = (np.cumsum([(x % 201) - 100 for x in r]) + 5000) / 100
    counter = np.cumsum([x % 1000 for x in r]).astype(np.float64)
    counter[300:] -= counter[299]  # a reset
    gappy = np.concatenate([ts[:100], ts[400:450], ts[700:]])
    dist = np.array([(x % 10_000) / 1000 for x in r[:240]])
    return {
        "empty": rollup.compute(np.zeros(0, np.int64), np.zeros(0), 60_000),
        "single": rollup.compute(ts[:1], walk[:1], 60_000),
        "walk_1m": rollup.compute(ts, walk, 60_000),
        "walk_1h": rollup.compute(ts, walk, 3_600_000),
        "counter_1m": rollup.compute(ts, counter, 60_000),
        "gaps_1m": rollup.compute(gappy, walk[: gappy.size], 60_000),
        "distribution_1m": rollup.compute(ts[:240], dist, 60_000, distribution=True),
        "specials": _specials(),
    }


def assert_same(got: rollup.Rollup, want: rollup.Rollup) -> None:
    assert got.window_ms == want.window_ms
    assert got.starts.dtype == np.int64
    np.testing.assert_array_equal(got.starts, want.starts)
    for c in rollup.COLUMNS:
        col = got.column(c)
        assert col.dtype == np.float64, c
        np.testing.assert_array_equal(col.view(np.uint64), want.column(c).view(np.uint64), err_msg=c)
    assert (got.digests is None) == (want.digests is None)
    for a, b in zip(got.digests or [], want.digests or [], strict=True):
        assert a.to_bytes() == b.to_bytes()


def _read(name: str) -> dict[str, bytes]:
    blocks: dict[str, bytes] = {}
    for line in (FIXTURES / name).read_text().splitlines():
        if line and not line.startswith("#"):
            case, hexed = line.split()
            blocks[case] = bytes.fromhex(hexed)
    return blocks


def _write(name: str, version: int) -> None:
    lines = [
        f"# Golden rollup blocks, format version {version}: <case> <hex>."
        " Inputs: tests/test_rollup_format.py golden_inputs().",
    ]
    lines += [f"{case} {rollup.encode(r).hex()}" for case, r in golden_inputs().items()]
    (FIXTURES / name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", list(golden_inputs()))
def test_version_1_blocks_still_decode(case: str) -> None:
    """Blocks written before version 2 sit in changelogs for 90 days (1m) or forever (1h)."""
    r = golden_inputs()[case]
    assert_same(rollup.decode(_read("golden_v1.txt")[case], r.window_ms), r)


@pytest.mark.parametrize("case", list(golden_inputs()))
def test_golden_v2_block_decodes(case: str) -> None:
    r = golden_inputs()[case]
    assert_same(rollup.decode(_read("golden_v2.txt")[case], r.window_ms), r)


@pytest.mark.parametrize("case", list(golden_inputs()))
def test_golden_v2_block_is_byte_stable(case: str) -> None:
    """Encoding must not drift silently (a replay must rewrite the same bytes). A pcodec
    upgrade may change its bytes legitimately: check the decode test on the old file first."""
    assert rollup.encode(golden_inputs()[case]) == _read("golden_v2.txt")[case]


def test_current_blocks_carry_the_current_version() -> None:
    assert rollup.encode(golden_inputs()["walk_1m"])[0] == rollup.ROLLUP_FORMAT_VERSION == 2


@pytest.mark.parametrize("case", ["walk_1m", "walk_1h", "counter_1m", "gaps_1m", "distribution_1m"])
def test_version_2_is_smaller_than_version_1(case: str) -> None:
    """The point of version 2; figures per workload are in perf/RESULTS.md."""
    assert len(rollup.encode(golden_inputs()[case])) < len(_read("golden_v1.txt")[case])


# ---------------------------------------------------------------- exact round trips

special_floats = st.sampled_from(floats_from_bits(SPECIAL_BITS).tolist())
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.integers(0, 2**64 - 1).map(lambda b: float(floats_from_bits([b])[0])),
    special_floats,
)


def assert_round_trip(r: rollup.Rollup) -> None:
    block = rollup.encode(r)
    assert_same(rollup.decode(block, r.window_ms), r)
    assert rollup.encode(rollup.decode(block, r.window_ms)) == block  # replays rewrite the same bytes


@st.composite
def sample_series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique timestamps (regular, jittered or with gaps) and values of one shape."""
    n = draw(st.integers(1, 400))
    shape = draw(st.sampled_from(["walk", "constant", "counter", "random", "specials", "decimals", "multiplied"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    step_ms = draw(st.sampled_from([1_000, 10_000, 15_000, 61_000, 900_000]))
    ts = T0_MS + np.cumsum(rng.integers(1, 2 * step_ms, n) if draw(st.booleans()) else np.full(n, step_ms))
    if shape == "walk":
        vals = np.round(50 + np.cumsum(rng.normal(0, 1, n)), 2)
    elif shape == "constant":
        vals = np.full(n, draw(any_float))
    elif shape == "counter":  # increments with resets
        incs = rng.poisson(rng.uniform(0.1, 1000), n).astype(np.float64) / draw(st.sampled_from([1, 100]))
        resets = rng.random(n) < 0.02
        vals = np.zeros(n)
        acc = 0.0
        for i in range(n):
            acc = incs[i] if resets[i] else acc + incs[i]
            vals[i] = acc
    elif shape == "random":
        vals = rng.normal(0, 1e6, n) * 10.0 ** rng.integers(-300, 300, n)
    elif shape == "decimals":
        vals = rng.integers(-(10**9), 10**9, n) / 10.0 ** draw(st.integers(0, 9))
    elif shape == "multiplied":  # producers that scale by multiplying (ms * 0.001): the multiply mode
        vals = np.cumsum(rng.integers(0, 10**6, n)) * float(f"1e-{draw(st.integers(1, 9))}")
    else:
        vals = np.array(draw(st.lists(any_float, min_size=n, max_size=n)))
    return ts.astype(np.int64), vals


@EXAMPLES
@given(sample_series(), st.sampled_from([60_000, 3_600_000]), st.booleans())
def test_computed_rollups_round_trip_exactly(series: tuple[np.ndarray, np.ndarray], window_ms: int,
                                             distribution: bool) -> None:
    ts, vals = series
    assert_round_trip(rollup.compute(ts, vals, window_ms, distribution))


@EXAMPLES
@given(st.data(), st.integers(0, 40), st.booleans())
def test_any_rollup_round_trips_exactly(data: st.DataObject, n: int, increasing: bool) -> None:
    """Hand-built columns of arbitrary bits: nothing but exactness can pass."""
    if increasing:
        gaps = data.draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n))
        starts = T0_MS + np.cumsum(np.array(gaps, dtype=np.int64))
    else:
        starts = np.array(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), np.int64)
    cols = [np.array(data.draw(st.lists(any_float, min_size=n, max_size=n)), dtype=np.float64)
            for _ in rollup.COLUMNS]
    assert_round_trip(rollup.Rollup(60_000, starts, *cols))


def _short_columns(data: st.DataObject) -> np.ndarray:
    """7 x n columns of a short block: random bits, or a computed rollup of 1h windows."""
    if data.draw(st.booleans()):
        ts, vals = data.draw(sample_series())
        r = rollup.compute(ts, vals, 3_600_000)
        n = min(len(r), rollup_codec._SHORT)
        return np.stack([r.column(c)[:n] for c in rollup_codec.ORDER])
    n = data.draw(st.integers(1, rollup_codec._SHORT))
    return np.array([data.draw(st.lists(any_float, min_size=n, max_size=n)) for _ in rollup_codec.ORDER])


@EXAMPLES
@given(st.data())
def test_short_block_scalar_twin_writes_and_reads_like_the_vector_path(data: st.DataObject) -> None:
    """Blocks of up to ``_SHORT`` windows (the 1h tier) are coded on Python floats;
    the bytes and decoded bits must be those of the numpy path."""
    values = _short_columns(data)
    n = values.shape[1]
    if n == 0:
        return
    vector: list[bytes] = []
    assert not rollup_codec._encode_columns_vector(values, n, vector)
    assert rollup_codec._encode_columns_scalar(values) == vector
    body = b"".join(vector)
    reader = Reader(body)
    scalar = rollup_codec._decode_columns_scalar(reader, n, None)
    reader.finish()
    reader = Reader(body)
    by_name = rollup_codec._decode_columns_vector(reader, n, None)
    reader.finish()
    for i, name in enumerate(rollup_codec.ORDER):
        np.testing.assert_array_equal(scalar[i].view(np.uint64), by_name[name].view(np.uint64), err_msg=name)
        np.testing.assert_array_equal(scalar[i].view(np.uint64), values[i].view(np.uint64), err_msg=name)


_INT64 = st.integers(-(2**63), 2**63 - 1)


def _int_rows(data: st.DataObject, rows: int, n: int) -> np.ndarray:
    """Rows that reach every coding: zeros, small or huge spreads, outliers, few nonzeros."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    out = np.zeros((rows, n), dtype=np.int64)
    for row in out:
        spread = data.draw(st.sampled_from([0, 1, 5, 300, 2**20, 2**62]))
        row[:] = rng.integers(-spread, spread + 1, n) * (rng.random(n) < data.draw(st.sampled_from([0.1, 0.7, 1])))
        if data.draw(st.booleans()):  # an outlier, or the full int64 range
            row[rng.integers(n)] = data.draw(st.integers(-(2**63), 2**63 - 1))
    return out


@EXAMPLES
@given(st.data(), st.integers(rollup_codec._SHORT + 1, 150), st.integers(1, 3))
def test_long_columns_coded_together_are_each_column_coded_alone(data: st.DataObject, n: int, blocks: int) -> None:
    """``_long_sections`` plans and writes the packings of many columns at once; every
    section must be the bytes ``_patch_section`` and ``_residual_section`` write for it alone."""
    rows = blocks * len(rollup_codec.ORDER)
    residuals, patch = _int_rows(data, rows, n), _int_rows(data, rows, n)
    zeros = (n - np.count_nonzero(residuals, axis=1)).tolist()
    patched = patch.any(axis=1).tolist()
    coded = sorted(data.draw(st.sets(st.integers(0, rows - 1))))
    got = rollup_codec._long_sections(residuals, patch, coded, zeros, patched)
    assert sorted(got) == coded
    for i in coded:
        name = rollup_codec.ORDER[i % len(rollup_codec.ORDER)]
        patches, patch_pco = rollup_codec._patch_section(patch[i]) if patched[i] else (uvarint(0), False)
        packed = packed_ints.plan(residuals[i], False)
        coding, section, res_pco = rollup_codec._residual_section(residuals[i], name, zeros[i], packed)
        assert got[i] == (patches, coding, section, patch_pco or res_pco), (i, name)


@EXAMPLES
@given(st.data(), st.integers(1, rollup_codec._SHORT), st.integers(1, 3))
def test_short_columns_coded_together_are_each_column_coded_alone(data: st.DataObject, n: int, blocks: int) -> None:
    """``_short_sections`` sizes both codings of all rows together and writes only the kept
    ones; every section must be what ``_patch_section_scalar`` and ``_residual_section_scalar``
    write for the row alone: near ties (a spread shifted far from 0), int64 wraps and the
    ``last`` rows' differences included."""
    rows = blocks * len(rollup_codec.ORDER)
    residuals, patch = _int_rows(data, rows, n), _int_rows(data, rows, n)
    shifts = np.array(data.draw(st.lists(_INT64 | st.just(0), min_size=rows, max_size=rows)), dtype=np.int64)
    residuals += shifts[:, None]  # wraps, as residuals do
    patched = patch.any(axis=1).tolist()
    coded = sorted(data.draw(st.sets(st.integers(0, rows - 1))))
    got = rollup_codec._short_sections(residuals, patch, coded, patched)
    assert sorted(got) == coded
    for i in coded:
        name = rollup_codec.ORDER[i % len(rollup_codec.ORDER)]
        patches = rollup_codec._patch_section_scalar(patch[i].tolist()) if patched[i] else uvarint(0)
        coding, section = rollup_codec._residual_section_scalar(residuals[i].tolist(), name)
        assert got[i] == (patches, coding, section, False), (i, name, residuals[i].tolist())


def _residual_columns(kind: str, rows: int = 8, n: int = 120) -> np.ndarray:
    rng = np.random.default_rng(7)
    out = np.rint(rng.normal(0, 400, (rows, n))).astype(np.int64)  # a 1m column's residuals
    if kind == "divisor":
        out *= 4096  # float residuals whose low mantissa bits are all zero
    elif kind == "tail":
        out[:, ::20] *= 5_000  # a spike every 20 windows
    return out


@pytest.mark.parametrize("kind", ["divisor", "tail"])
def test_pcodec_is_tried_where_it_beats_packing(kind: str) -> None:
    """A common divisor (pcodec's IntMult) or a tail of outliers: pcodec is tried and kept."""
    columns = _residual_columns(kind)
    assert all(rollup_codec.pcodec_may_win(columns, False))
    for column in columns:
        packed = packed_ints.plan(column, False)
        coding, section, pco = rollup_codec._residual_section(column, "sum", 0, packed)
        assert (coding, pco) == (rollup_codec._PCODEC, True)
        assert packed is not None and len(section) < packed.size


def test_pcodec_is_not_tried_on_bell_shaped_residuals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Residuals without a divisor or tail pack smaller than pcodec codes them: no try (each
    costs ~3 µs, a 1m block has 7 columns)."""
    columns = _residual_columns("bell")
    for column in columns:  # what a try would have found
        assert packed_ints.plan(column, False).size < len(rollup_codec._pco.compress(column, rollup_codec._ORDER0))
    assert not any(rollup_codec.pcodec_may_win(columns, False))
    assert not any(rollup_codec.pcodec_may_win(np.cumsum(columns, axis=1), True))  # ``last``: its differences
    monkeypatch.setattr(rollup_codec._pco, "compress", lambda *a: pytest.fail("pcodec tried"))
    rows = list(range(len(columns)))
    zeros = [0] * len(rows)
    sections = rollup_codec._long_sections(columns, np.zeros_like(columns), rows, zeros, [False] * len(rows))
    assert {coding for _, coding, _, _ in sections.values()} == {rollup_codec._PACKED}


@pytest.mark.parametrize("kind", ["bell", "divisor"])
def test_dense_patches_try_pcodec_behind_the_same_gate(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense patch columns are packed without a pcodec try unless the gate says pcodec may win."""
    patch = _residual_columns(kind)
    residuals = np.zeros_like(patch)
    rows = list(range(len(patch)))
    tried: list[int] = []
    compress = rollup_codec._pco.compress
    monkeypatch.setattr(rollup_codec._pco, "compress", lambda column, *a: tried.append(1) or compress(column, *a))
    sections = rollup_codec._long_sections(residuals, patch, rows, [len(patch[0])] * len(rows), [True] * len(rows))
    heads = {section[0][0] for section in sections.values()}
    if kind == "bell":
        assert not tried and heads == {rollup_codec._DENSE_PACKED}
    else:
        assert len(tried) == len(rows) and heads == {rollup_codec._DENSE_PCODEC}


@EXAMPLES
@given(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-300, 300) | st.just(0), min_size=1, max_size=200),
       st.booleans())
def test_packed_int_columns_round_trip(values: list[int], deltas: bool) -> None:
    """Both packers (Python ints up to 32 values, numpy beyond) and the zero-eliding one."""
    column = np.array(values, dtype=np.int64)
    blocks = [packed_ints.pack(column, deltas), packed_ints.pack_zeros_elided(column)]
    assert blocks[0] == packed_ints.pack_small(values, deltas)  # the numpy packer writes the same bytes
    assert all(packed_ints.zigzag_varint(x) == uvarint(zigzag(x)) for x in values)
    rows = np.stack([column, column[::-1]])
    planned = [*packed_ints.plan_rows(rows), *packed_ints.plan_rows(rows, deltas=True),
               *packed_ints.plan_rows_zeros_elided(rows)]
    wanted = [*(packed_ints.pack(row, False) for row in rows), *(packed_ints.pack(row, True) for row in rows),
              *(packed_ints.pack_zeros_elided(row) for row in rows)]
    kept = [p for p in planned if p is not None]
    assert packed_ints.write_many(kept) == [p.to_bytes() for p in kept]  # written together, the same bytes
    for packing, want in zip(planned, wanted, strict=True):
        assert (packing is None) == (want is None)
        if packing is not None:
            assert packing.to_bytes() == want and packing.size == len(want)
    for packing, want in ((packed_ints.plan(column, deltas), blocks[0]),
                          (packed_ints.plan_zeros_elided(column), blocks[1])):
        assert (packing is None) == (want is None)
        if packing is not None and want is not None:  # sizes are known before the bytes
            assert packing.size == len(want)
    # Rows sized together, then written: each row's packing (or -1) and the bytes ``pack`` gives it.
    rows_deltas = np.array([deltas, not deltas])
    rows_packing = packed_ints.RowsPacking(rows, rows_deltas)
    alone = [packed_ints.pack(row, d) for row, d in zip(rows, rows_deltas.tolist(), strict=True)]
    assert rows_packing.sizes.tolist() == [-1 if a is None else len(a) for a in alone]
    members = [i for i, a in enumerate(alone) if a is not None]
    assert rows_packing.write(members) == [alone[i] for i in members]
    assert packed_ints.zigzag_varint_rows(rows) == [b"".join(map(packed_ints.zigzag_varint, r)) for r in rows.tolist()]
    for block in blocks:
        if block is None:  # offsets that need 64 bits are never packed
            continue
        reader = Reader(block)
        np.testing.assert_array_equal(packed_ints.unpack(reader, column.size), column)
        reader.finish()


def test_single_window_and_empty_blocks() -> None:
    one = rollup.compute(np.array([T0_MS]), np.array([-0.0]), 60_000)
    assert_round_trip(one)
    empty = rollup.compute(np.zeros(0, np.int64), np.zeros(0), 3_600_000, distribution=True)
    assert_round_trip(empty)
    plain = rollup.compute(np.array([T0_MS]), np.array([42.5]), 60_000)
    assert_round_trip(plain)
    assert len(rollup.encode(plain)) <= 21  # header, start, count and last; 5 columns predicted


def test_distribution_digests_survive_and_merge() -> None:
    rng = np.random.default_rng(5)
    obs = rng.lognormal(3, 1.2, 7200)
    ts = T0_MS + np.arange(obs.size, dtype=np.int64) * 1000
    r = rollup.decode(rollup.encode(rollup.compute(ts, obs, 60_000, distribution=True)), 60_000)
    assert r.digests is not None and len(r.digests) == len(r) == 120
    hour = rollup.coarsen(r, 3_600_000)
    assert hour.digests is not None
    q99 = hour.digests[0].quantile(0.99)
    assert abs((obs[:3600] < q99).mean() - 0.99) < 0.01


# ---------------------------------------------------------------- corrupt input


@pytest.mark.parametrize("case", list(golden_inputs()))
def test_truncated_blocks_are_corrupt_rollups(case: str) -> None:
    block = _read("golden_v2.txt")[case]
    for cut in range(len(block)):
        with pytest.raises(InvalidInput) as err:
            rollup.decode(block[:cut], 60_000)
        assert err.value.reason == "corrupt_rollup"
    with pytest.raises(InvalidInput, match="corrupt_rollup"):
        rollup.decode(block + b"\x00", 60_000)


@EXAMPLES
@given(st.sampled_from(list(golden_inputs())), st.data())
def test_damaged_blocks_decode_or_raise_corrupt_rollup(case: str, data: st.DataObject) -> None:
    block = bytearray(_read("golden_v2.txt")[case])
    for _ in range(data.draw(st.integers(1, 4))):
        block[data.draw(st.integers(0, len(block) - 1))] = data.draw(st.integers(0, 255))
    try:
        r = rollup.decode(bytes(block), 60_000)
    except InvalidInput as exc:
        assert exc.reason == "corrupt_rollup"
    else:
        assert all(r.column(c).size == len(r) for c in rollup.COLUMNS)


def test_unknown_versions_are_corrupt_rollups() -> None:
    for data in (b"", b"\x00", b"\x03\x00\x00", b"\x02\x80\x00"):
        with pytest.raises(InvalidInput, match="corrupt_rollup"):
            rollup.decode(data, 60_000)


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    _write("golden_v2.txt", rollup.ROLLUP_FORMAT_VERSION)
