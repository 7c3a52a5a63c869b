"""Settings from MF_* variables: defaults, conversion, refusal of unknown values."""

from __future__ import annotations

import pytest

from metricsflow.config import load_settings


def test_kafka_compression_default_and_choice() -> None:
    assert load_settings(env={}).kafka_compression == "zstd"
    assert load_settings(env={"MF_KAFKA_COMPRESSION": "lz4"}).kafka_compression == "lz4"
    assert load_settings(env={"MF_KAFKA_COMPRESSION": "none"}).kafka_compression == "none"


def test_unknown_kafka_compression_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="MF_KAFKA_COMPRESSION='brotli': one of none, gzip, snappy, lz4, zstd"):
        load_settings(env={"MF_KAFKA_COMPRESSION": "brotli"})
