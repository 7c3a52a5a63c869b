"""The broker's java command line: KAFKA_OPTS, as Kafka's own start scripts read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metricsflow.stack import kafka

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH")


def _libs(tmp_path: Path) -> Path:
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    return libs


def test_without_kafka_opts_the_command_has_only_its_own_flags(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_OPTS", raising=False)
    cmd = kafka._java_cmd(_libs(tmp_path), "kafka.Kafka", "server.properties")
    flags = cmd[1:cmd.index("-cp")]
    assert flags[:2] == ["-Xmx256m", "-Xms256m"]
    assert [f for f in flags if not f.startswith(("-Xm", "-XX:", "-D"))] == []
    assert cmd[-2:] == ["kafka.Kafka", "server.properties"]


def test_kafka_opts_come_after_the_defaults_so_they_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_OPTS", "-Xmx1g -XX:CompilerThreadPriority=5 '-Dsome.path=/a b'")
    cmd = kafka._java_cmd(_libs(tmp_path), "kafka.Kafka", "server.properties")
    cp = cmd.index("-cp")
    assert cmd[cp - 3:cp] == ["-Xmx1g", "-XX:CompilerThreadPriority=5", "-Dsome.path=/a b"]
    # Each later than the default it overrides: the JVM takes the last of a repeated flag.
    assert cmd.index("-Xmx1g") > cmd.index("-Xmx256m")
    assert cmd.index("-XX:CompilerThreadPriority=5") > cmd.index("-XX:CompilerThreadPriority=19")
    log4j = next(i for i, f in enumerate(cmd) if f.startswith("-Dlog4j2.configurationFile="))
    assert log4j < cp - 3
