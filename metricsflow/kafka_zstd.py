"""The zstd level of this process's Kafka producers (``MF_KAFKA_ZSTD_LEVEL``).

aiokafka compresses every zstd record batch at level 3 and takes no level (Kafka's Java
producer has ``compression.zstd.level``, KIP-390). Its record-batch builders, the compiled one
and the pure-Python one, call the module-level name ``zstd_encode`` when a batch is built, so
rebinding that name there sets the level for every producer of the process: the collector's
and the worker's (Faust's changelogs). The level is the producer's business only: brokers and
consumers read any level's frames.

On the load's point batches level 1 writes the same bytes as level 3 (4.08 B per point) in
55-80 % of the coding time, segments ~11 % more (perf/RESULTS.md, "zstd level 1 in the producers");
level -1, the default, 0.2 % more bytes than level 1 for 8 % less of the collector's produce CPU
(perf/RESULTS.md, "A known request found whole").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import ModuleType

import cramjam
from aiokafka import codec
from aiokafka.record import default_records as _py_records

from metricsflow.config import ZSTD_LEVELS

log = logging.getLogger(__name__)


def _builders() -> list[ModuleType]:
    modules = [_py_records]
    try:
        from aiokafka.record._crecords import default_records as compiled
    except ImportError:  # aiokafka without its extensions (AIOKAFKA_NO_EXTENSIONS or no wheel)
        return modules
    return [compiled, *modules]


def _encode(payload: bytes, level: int) -> bytes:
    return bytes(cramjam.zstd.compress(payload, level=level))


def encoder(level: int) -> Callable[[bytes], bytes]:
    """A zstd encoder of ``level`` with aiokafka's ``zstd_encode`` signature."""
    if not ZSTD_LEVELS[0] <= level <= ZSTD_LEVELS[1]:
        raise ValueError(f"zstd level {level}: between {ZSTD_LEVELS[0]} and {ZSTD_LEVELS[1]}")
    return functools.partial(_encode, level=level)


def use_level(level: int) -> None:
    """Every zstd record batch this process's Kafka producers build from now on is coded at ``level``."""
    encode = encoder(level)
    for module in _builders():
        if not hasattr(module, "zstd_encode"):
            # An aiokafka that no longer looks the name up here keeps its own level: a cost, not
            # a fault, so the process goes on (tests/test_kafka_zstd.py fails on such an aiokafka).
            log.warning("%s has no zstd_encode: Kafka batches keep aiokafka's zstd level", module.__name__)
            continue
        module.zstd_encode = encode


def level_in_use() -> int | None:
    """The level ``use_level`` set in the builder aiokafka's producer uses (the compiled one when
    it is there); None while aiokafka's own encoder (level 3) is in place."""
    encode = _builders()[0].zstd_encode
    if encode is codec.zstd_encode:
        return None
    return encode.keywords["level"] if isinstance(encode, functools.partial) else None
