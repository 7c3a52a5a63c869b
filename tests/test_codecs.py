"""Chunk codecs: exact round trips, byte-stable golden blocks, corrupt input handling.

Every codec must return timestamps exactly and values bit for bit (NaN payloads,
the Prometheus stale marker, -0.0, +-Inf, subnormals). Every malformed block must
raise InvalidInput("corrupt_chunk") and nothing else. Bounded to ~100 examples per
property (MF_FUZZ_EXAMPLES raises it); the file runs in well under 30 s.

Regenerate the golden blocks after a deliberate format change (new tag!) with
``python -m tests.test_codecs --regen``; the diff is the review.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcodec import ChunkConfig, DeltaSpec, wrapped

from metricsflow import codecs
from metricsflow.codecs import _pco, raw_decimal
from metricsflow.codecs._wire import uvarint
from metricsflow.errors import InvalidInput
from metricsflow.model import STALE_NAN_BITS

CODEC_NAMES = sorted(codecs.CODECS)
GOLDEN = Path(__file__).parent / "fixtures" / "codecs" / "golden_blocks.txt"
EXAMPLES = settings(
    max_examples=int(os.environ.get("MF_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

SPECIAL_BITS = [
    STALE_NAN_BITS,
    0x7FF8000000000000,  # quiet NaN
    0xFFF8000000000001,  # negative NaN with payload
    0x7FF0000000000001,  # signalling NaN
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000001,  # smallest subnormal
    0x800FFFFFFFFFFFFF,  # largest negative subnormal
    0x7FEFFFFFFFFFFFFF,  # max float
]


def floats_from_bits(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint64).view(np.float64)


def assert_same(got: tuple[np.ndarray, np.ndarray], ts: np.ndarray, values: np.ndarray) -> None:
    got_ts, got_values = got
    assert got_ts.dtype == np.int64 and got_values.dtype == np.float64
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_values.view(np.uint64), values.view(np.uint64))


# ---------------------------------------------------------------- strategies


@st.composite
def timestamp_columns(draw: st.DrawFn, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["regular", "jitter", "anywhere", "extremes"]))
    if kind == "anywhere" or n == 0:
        picked = draw(st.lists(st.integers(I64_MIN, I64_MAX), min_size=n, max_size=n, unique=True))
        return np.array(sorted(picked), dtype=np.int64)
    step = draw(st.integers(1, 10**9 if kind == "extremes" else 60_000))
    jitter = draw(st.integers(0, 5)) if kind == "jitter" else 0
    stride = step + jitter + 1
    latest_start = I64_MAX - n * stride
    if kind == "extremes":
        start = draw(st.sampled_from([I64_MIN, latest_start, -1_000]))
    else:
        start = draw(st.integers(-(2**50), 2**50))
    offsets = draw(st.lists(st.integers(0, jitter), min_size=n, max_size=n))
    # start + i * stride + offset with offset < stride keeps it strictly increasing.
    return np.array([start + i * stride + off for i, off in enumerate(offsets)], dtype=np.int64)


@st.composite
def value_columns(draw: st.DrawFn, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["bits", "floats", "decimal", "multiplied", "constant", "counter", "mixed"]))
    if kind == "bits":
        bits = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(SPECIAL_BITS))
        return floats_from_bits(draw(st.lists(bits, min_size=n, max_size=n)))
    if kind == "floats":
        return np.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), dtype=np.float64)
    if kind == "constant":
        return np.full(n, draw(st.one_of(st.floats(), st.sampled_from([0.0, 1.0, 2.5e9]))))
    scale = 10.0 ** draw(st.integers(0, 9))
    if kind == "counter":
        steps = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
        return np.cumsum(np.array(steps, dtype=np.int64)) / scale
    mantissas = draw(st.lists(st.integers(-(2**53), 2**53), min_size=n, max_size=n))
    if kind == "multiplied":  # ms * 0.001 style: often an ulp or two off the decimal
        return np.array(mantissas, dtype=np.int64) * (1 / scale)
    values = np.array(mantissas, dtype=np.int64) / scale
    if kind == "mixed" and n:
        where = draw(st.lists(st.integers(0, n - 1), max_size=4))
        values[where] = floats_from_bits(
            draw(st.lists(st.sampled_from(SPECIAL_BITS), min_size=len(where), max_size=len(where)))
        )
    return values


@st.composite
def chunks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.one_of(st.integers(0, 3), st.integers(0, 300)))
    return draw(timestamp_columns(n)), draw(value_columns(n))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", CODEC_NAMES)
@EXAMPLES
@given(chunk=chunks())
def test_round_trip_is_exact(name: str, chunk: tuple[np.ndarray, np.ndarray]) -> None:
    ts, values = chunk
    block = codecs.encode(ts, values, name)
    assert block[0] == codecs.CODECS[name].tag
    assert_same(codecs.decode(block), ts, values)


ROUND_TRIP_CASES = {
    "empty": ([], []),
    "single": ([1_700_000_000_000], [42.5]),
    "single_stale": ([0], floats_from_bits([STALE_NAN_BITS])),
    "all_specials": (list(range(-5, 5)), floats_from_bits(SPECIAL_BITS)),
    "int64_extremes": ([I64_MIN, I64_MIN + 1, 0, I64_MAX - 1, I64_MAX], [1.0, -0.0, 0.0, 0.1, 1e300]),
    "two_points_full_span": ([I64_MIN, I64_MAX], [5e-324, -5e-324]),
    "regular_span_past_2_53": ([0, 2**53, 2**54], [0.0, 0.0, 0.0]),  # float64 sizing bug, found by hypothesis
    "regular_step_past_int64": ([-(2**62), 2**62], [1.0, 2.0]),
    "stale_at_end": (
        np.arange(120) * 15_000,
        np.concatenate([np.full(119, 3.0), floats_from_bits([STALE_NAN_BITS])]),
    ),
    "counter_with_reset": (np.arange(200) * 1000, np.concatenate([np.arange(100.0), np.arange(100.0)])),
    "minus_zero_in_decimals": (np.arange(4), [0.5, -0.0, 0.25, 0.0]),
    "near_decimals": (np.arange(50), np.arange(10_000_000, 10_000_050) * 1e-6),
    "huge_mantissa": (np.arange(3), [2.0**53, 2.0**53 + 2, 1.8446744073709552e19]),
}


@pytest.mark.parametrize("name", CODEC_NAMES)
@pytest.mark.parametrize("case", sorted(ROUND_TRIP_CASES))
def test_round_trip_cases(name: str, case: str) -> None:
    raw_ts, raw_values = ROUND_TRIP_CASES[case]
    ts, values = np.asarray(raw_ts, dtype=np.int64), np.asarray(raw_values, dtype=np.float64)
    assert_same(codecs.decode(codecs.encode(ts, values, name)), ts, values)


def test_default_codec_is_registered_and_used() -> None:
    assert codecs.DEFAULT_CODEC in codecs.CODECS
    block = codecs.encode(np.array([1, 2]), np.array([1.0, 2.0]))
    assert block[0] == codecs.CODECS[codecs.DEFAULT_CODEC].tag


def test_tags_are_unique_single_bytes() -> None:
    tags = [c.tag for c in codecs.CODECS.values()]
    assert len(set(tags)) == len(tags) and all(0 <= t < 256 for t in tags)
    assert {c.name for c in codecs.CODECS.values()} == set(codecs.CODECS)


@pytest.mark.parametrize(
    ("ts", "values"),
    [
        ([2, 1], [0.0, 0.0]),  # unsorted
        ([1, 1], [0.0, 0.0]),  # duplicate
        ([1, 2], [0.0]),  # length mismatch
        ([[1, 2]], [[0.0, 0.0]]),  # not 1-d
        ([1.5, 2.5], [0.0, 0.0]),  # float timestamps would be truncated
        (np.array([1, 2**63], dtype=np.uint64), [0.0, 0.0]),  # would wrap negative
    ],
)
def test_encode_rejects_bad_columns(ts: list[object] | np.ndarray, values: list[object]) -> None:
    with pytest.raises(InvalidInput) as err:
        codecs.encode(np.array(ts), np.array(values))
    assert err.value.reason == "invalid_chunk"


def test_encode_rejects_unknown_codec() -> None:
    with pytest.raises(InvalidInput) as err:
        codecs.encode(np.array([1]), np.array([1.0]), "zstd")
    assert err.value.reason == "unknown_codec"


# ---------------------------------------------------------------- golden blocks


def _lcg(seed: int, n: int) -> list[int]:
    """Deterministic 31-bit pseudo-random ints, independent of numpy's generators."""
    out, x = [], seed
    for _ in range(n):
        x = (1103515245 * x + 12345) % 2**31
        out.append(x)
    return out


def golden_inputs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Inputs built from integers and correctly rounded divisions only: platform-stable."""
    r = _lcg(7, 64)
    walk = np.cumsum([(x % 201) - 100 for x in r]) + 5000  # mantissas, 2 decimals
    jitter = np.array([(x >> 8) % 7 - 3 for x in r], dtype=np.int64)
    return {
        "empty": (np.zeros(0, np.int64), np.zeros(0)),
        "single": (np.array([1_764_000_000_000]), np.array([42.5])),
        "regular_walk": (1_764_000_000_000 + 10_000 * np.arange(64), walk / 100),
        "jitter_counter": (
            1_764_000_000_000 + 15_000 * np.arange(64) + jitter,
            np.cumsum([x % 1000 for x in r]).astype(np.float64),
        ),
        "specials": (
            np.array([I64_MIN, -(10**15), -1, 0, 1, 10**12, 10**15, 10**18, I64_MAX - 1, I64_MAX]),
            floats_from_bits(SPECIAL_BITS),
        ),
        "full_floats": (np.arange(32) * 1000, np.array([x / 2**31 for x in r[:32]])),
        "near_decimal": (np.arange(32) * 1000, np.array([x % 10**7 for x in r[:32]]) * 1e-6),
        "sparse_scrapes": (  # mostly exact 5 s steps, a few shifted scrapes; a counter that rarely moves
            1_764_000_000_000 + 5_000 * np.arange(64) + np.array([3 if x % 9 == 0 else 0 for x in r]),
            np.array([float(4096 * (i // 16)) for i in range(64)]),
        ),
        "constant_with_stale": (
            1_764_000_000_000 + 15_000 * np.arange(40),
            np.concatenate([np.full(39, 1.0), floats_from_bits([STALE_NAN_BITS])]),
        ),
    }


def raw_decimal_inputs() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """(timestamps, mantissas, decimals) of the golden inputs a cut writes as raw decimal blocks (tag 5)."""
    inputs = golden_inputs()
    walk = np.rint(inputs["regular_walk"][1] * 100).astype(np.int16)
    return {"empty": (inputs["empty"][0], np.zeros(0, np.int8), 0),
            "single": (inputs["single"][0], np.array([425], np.int16), 1),
            "regular_walk": (inputs["regular_walk"][0], walk, 2),
            "sparse_scrapes": (inputs["sparse_scrapes"][0], inputs["sparse_scrapes"][1].astype(np.int32), 0)}


def _golden_blocks() -> dict[tuple[str, str], bytes]:
    blocks = {(case, name): codecs.encode(ts, values, name)
              for case, (ts, values) in golden_inputs().items() for name in CODEC_NAMES}
    for case, (ts, mantissas, decimals) in raw_decimal_inputs().items():
        blocks[(case, raw_decimal.NAME)] = raw_decimal.encode(ts, mantissas, decimals)
    return blocks


def _read_golden() -> dict[tuple[str, str], bytes]:
    blocks: dict[tuple[str, str], bytes] = {}
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            case, name, hexed = line.split()
            blocks[(case, name)] = bytes.fromhex(hexed)
    return blocks


def _write_golden() -> None:
    lines = [
        "# Golden chunk blocks: <case> <codec> <hex>. Inputs: tests/test_codecs.py golden_inputs().",
        f"# Chunk format version {codecs.FORMAT_VERSION}. Regenerate: python -m tests.test_codecs --regen",
    ]
    lines.extend(f"{case} {name} {block.hex()}" for (case, name), block in _golden_blocks().items())
    GOLDEN.write_text("\n".join(lines) + "\n")


GOLDEN_KEYS = list(_golden_blocks())


@pytest.mark.parametrize(("case", "name"), GOLDEN_KEYS)
def test_golden_block_decodes(case: str, name: str) -> None:
    """The format promise: blocks already on disk keep decoding to the same columns."""
    ts, values = golden_inputs()[case]
    assert_same(codecs.decode(_read_golden()[(case, name)]), ts, values)


@pytest.mark.parametrize(("case", "name"), GOLDEN_KEYS)
def test_golden_block_is_byte_stable(case: str, name: str) -> None:
    """Encoding must not drift silently. A pcodec upgrade may legitimately change its
    bytes (pcodec promises decodability, not identical output): then re-check
    test_golden_block_decodes on the old file before regenerating."""
    assert _golden_blocks()[(case, name)] == _read_golden()[(case, name)]


# ---------------------------------------------------------------- corrupt input


def _sample_blocks() -> list[bytes]:
    return list(_golden_blocks().values())


SAMPLE_BLOCKS = _sample_blocks()


def assert_rejected_or_decoded(data: bytes) -> None:
    try:
        ts, values = codecs.decode(data)
    except InvalidInput as err:
        assert err.reason == "corrupt_chunk"
        return
    assert ts.dtype == np.int64 and values.dtype == np.float64 and ts.shape == values.shape


@pytest.mark.parametrize("index", range(len(SAMPLE_BLOCKS)))
def test_every_truncation_is_rejected(index: int) -> None:
    block = SAMPLE_BLOCKS[index]
    for cut in range(len(block)):
        with pytest.raises(InvalidInput) as err:
            codecs.decode(block[:cut])
        assert err.value.reason == "corrupt_chunk"


@pytest.mark.parametrize("index", range(len(SAMPLE_BLOCKS)))
def test_trailing_bytes_are_rejected(index: int) -> None:
    with pytest.raises(InvalidInput):
        codecs.decode(SAMPLE_BLOCKS[index] + b"\x00")


def test_unknown_tag_and_empty_input_are_rejected() -> None:
    for data in (b"", b"\xff", bytes((200, 1, 2, 3))):
        with pytest.raises(InvalidInput):
            codecs.decode(data)


@EXAMPLES
@given(tag=st.sampled_from(codecs.TAGS), body=st.binary(max_size=300))
def test_random_bytes_after_a_valid_tag(tag: int, body: bytes) -> None:
    assert_rejected_or_decoded(bytes((tag,)) + body)


@EXAMPLES
@given(
    index=st.integers(0, len(SAMPLE_BLOCKS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_mutated_blocks(index: int, flips: list[tuple[int, int]]) -> None:
    block = bytearray(SAMPLE_BLOCKS[index])
    for where, mask in flips:
        block[where % len(block)] ^= mask
    assert_rejected_or_decoded(bytes(block))


@pytest.mark.parametrize(("block", "why"), [
    (bytes((5, 1)) + (7).to_bytes(8, "little") + bytes((2, 3)) + b"\0\0\0", "width 3"),
    (bytes((5, 1)) + (7).to_bytes(8, "little") + bytes((19, 1)) + b"\1", "decimals 19"),
    (bytes((5, 1)) + (7).to_bytes(8, "little") + bytes((2, 2)) + b"\1\0\0", "trailing byte"),
    (bytes((5, 0, 0)), "trailing byte after an empty block"),
    (bytes((5, 2)) + (7).to_bytes(8, "little") * 2 + bytes((0, 1)) + b"\1\2", "repeated timestamp"),
])
def test_raw_decimal_blocks_out_of_layout_are_corrupt(block: bytes, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        codecs.decode(block)
    assert err.value.reason == "corrupt_chunk", why


def test_raw_decimal_values_are_the_mantissas_divided_as_the_layout_says() -> None:
    block = raw_decimal.encode(np.array([1, 2, 3]), np.array([-125, 0, 32767], np.int16), 3)
    assert block.hex() == "0503" + "".join(t.to_bytes(8, "little").hex() for t in (1, 2, 3)) + "0302" + "83ff0000ff7f"
    ts, values = codecs.decode(block)
    assert ts.tolist() == [1, 2, 3] and values.tolist() == [-0.125, 0.0, 32.767]
    assert np.signbit(values[1]) == np.False_  # a mantissa of 0 is +0.0


def test_huge_point_count_is_rejected_without_allocating() -> None:
    for tag in codecs.TAGS:
        with pytest.raises(InvalidInput):
            codecs.decode(bytes((tag,)) + uvarint(2**63))


def test_pcodec_lookback_metadata_is_refused() -> None:
    """pcodec's lookback window size drives an allocation; we never write it, so refuse it."""
    repeating = np.tile(np.array([5, 91, 3, 77, 1234, 8, 60000], dtype=np.int64), 43)[:300]
    chunk = wrapped.FileCompressor().chunk_compressor(
        repeating, ChunkConfig(delta_spec=DeltaSpec.try_lookback())
    )
    meta = chunk.write_meta()
    assert (meta[0] & 0x0F, meta[0] >> 4) == (0, 2)  # Classic mode, Lookback delta encoding
    values = _pco.compress(np.zeros(300), _pco.config(0))
    block = bytes((2,)) + uvarint(300) + _pco.HEADER + meta + chunk.write_page(0) + values
    with pytest.raises(InvalidInput, match="delta encoding 2"):
        codecs.decode(block)


if __name__ == "__main__" and "--regen" in sys.argv:
    _write_golden()
    print(f"wrote {GOLDEN}")
