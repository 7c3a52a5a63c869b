"""The zstd level of our Kafka producers: every record-batch builder aiokafka has codes at the level set."""

from __future__ import annotations

from collections.abc import Iterator

import cramjam
import numpy as np
import pytest
from aiokafka import codec
from aiokafka.record import default_records as py_records
from aiokafka.record.memory_records import MemoryRecords

from metricsflow import kafka_zstd
from metricsflow.config import load_settings
from metricsflow.pointbatch import encode_columns

try:
    from aiokafka.record._crecords import default_records as c_records
except ImportError:  # aiokafka without its extensions: the pure-Python builder only
    c_records = None
BUILDERS = [m for m in (c_records, py_records) if m is not None]
BUILDER_IDS = ["compiled", "python"][-len(BUILDERS):]

ZSTD = 4  # the record batch's codec id
HEADER = 61  # a v2 record batch's header: the compressed records follow it


@pytest.fixture(autouse=True)
def _aiokafka_level() -> Iterator[None]:
    kept = [(m, m.zstd_encode) for m in BUILDERS]
    yield
    for module, encode in kept:
        module.zstd_encode = encode


def _values() -> list[bytes]:
    """Point batches as the collector writes them: 60 series x 10 samples of a random walk."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(4):
        sids = rng.integers(1, 2**63, 60, dtype=np.int64).astype(np.uint64)
        ts = np.tile(1_795_000_000_000 + np.arange(i * 10, i * 10 + 10, dtype=np.int64) * 10_000, 60)
        vals = np.round(np.cumsum(rng.normal(0, 1, 600)), 2)
        out += encode_columns(sids, np.full(60, 10), ts, vals, 100_000, 1)
    return out


def _build(module, compression: int) -> bytes:
    builder = module.DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20)
    for offset, value in enumerate(_values()):
        builder.append(offset, timestamp=1_795_000_000_000, key=None, value=value, headers=[])
    return bytes(builder.build())


@pytest.mark.parametrize("module", BUILDERS, ids=BUILDER_IDS)
@pytest.mark.parametrize("level", [1, -5, 19])
def test_batches_are_coded_at_the_level_set(module, level: int) -> None:
    records = _build(module, 0)[HEADER:]
    assert bytes(cramjam.zstd.compress(records, level=level)) != bytes(cramjam.zstd.compress(records, level=3))
    kafka_zstd.use_level(level)
    built = _build(module, ZSTD)
    assert built[HEADER:] == bytes(cramjam.zstd.compress(records, level=level))
    assert kafka_zstd.level_in_use() == level


def test_without_a_level_aiokafka_codes_at_3() -> None:
    for module in BUILDERS:
        module.zstd_encode = codec.zstd_encode  # as imported, whatever ran before in this process
    assert kafka_zstd.level_in_use() is None
    records = _build(BUILDERS[0], 0)[HEADER:]
    assert _build(BUILDERS[0], ZSTD)[HEADER:] == codec.zstd_encode(records)


@pytest.mark.parametrize("module", BUILDERS, ids=BUILDER_IDS)
def test_batches_of_any_level_read_back(module) -> None:
    kafka_zstd.use_level(1)
    batch = MemoryRecords(_build(module, ZSTD)).next_batch()
    assert batch.compression_type == ZSTD
    assert [r.value for r in batch] == _values()


def test_levels_outside_zstds_range_are_refused() -> None:
    with pytest.raises(ValueError, match="between"):
        kafka_zstd.use_level(23)
    with pytest.raises(ValueError, match="MF_KAFKA_ZSTD_LEVEL=99"):
        load_settings(env={"MF_KAFKA_ZSTD_LEVEL": "99"})
    assert load_settings(env={}).kafka_zstd_level == -1
    assert load_settings(env={"MF_KAFKA_ZSTD_LEVEL": "-3"}).kafka_zstd_level == -3


@pytest.mark.skipif(c_records is None, reason="needs aiokafka's compiled builder beside the Python one")
def test_a_builder_without_the_name_keeps_its_level_and_says_so(monkeypatch, caplog) -> None:
    monkeypatch.delattr(py_records, "zstd_encode")
    kafka_zstd.use_level(1)
    assert "has no zstd_encode" in caplog.text
    assert not hasattr(py_records, "zstd_encode")
    assert kafka_zstd.level_in_use() == 1  # the compiled builder's level was still set
