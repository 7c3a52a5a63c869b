"""Apache Kafka in KRaft mode on 127.0.0.1, from the Maven Central jars.

The jars are fetched once with Maven into a cache outside the repo
(``$MF_CACHE`` or ``~/.cache/metricsflow``); the broker runs from them with the
machine's Java 17. One node is both broker and controller, which is what a
development machine and the tests need; docker/ shows a three-node cluster.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from metricsflow.errors import MetricsflowError
from metricsflow.stack.process import port_open, read_pid, spawn, stop_pid, wait_until

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>io.metricsflow</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
<dependencies>
<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
</dependencies></project>
"""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/><Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/><Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaError(MetricsflowError):
    """Kafka could not be installed, formatted or started; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("MF_CACHE", Path.home() / ".cache" / "metricsflow"))


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}" / "libs"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Fetch the broker's jars with Maven unless they are cached; returns the libs dir."""
    libs = jars_dir(version)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaError("cannot fetch Kafka jars: `mvn` is not installed (apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(_POM.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
        cmd = ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
               "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            output = proc.stdout[-2000:] + proc.stderr[-2000:]
            raise KafkaError(f"cannot fetch Kafka {version} jars with Maven:\n{output}")
    marker.write_text(version)
    return libs


@dataclass(frozen=True, slots=True)
class KafkaNode:
    """One single-node KRaft cluster: where it keeps its data and where it listens."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> str:
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'logs'}",
            "num.partitions=8",
            # A single node cannot replicate; the internal topics must say so.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.cleaner.backoff.ms=5000",
            "",
        ])


# The GC flags Kafka's own start script (kafka-run-class.sh) gives the broker (G1 aiming at 20 ms
# pauses instead of its 200 ms default), and like it a GC log beside the broker's: young pauses of
# 6–31 ms during perf/bench_e2e.py, a part of the collector's ack tail to look at first.
_GC_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent")


# The JIT's compiler threads at the lowest priority (nice 19): a fresh broker compiles for minutes,
# and on a machine it shares with the collector and workers its C2 thread took 0.25-0.75 of a core
# in half the bursts of slow acks (0.19 cores over a steady phase, more than Kafka's request
# handlers); nice 19, it compiles in the cores' idle time. Steady ack p99 at 600 k points/s:
# 61.6 / 63.9 -> 50.8 / 50.0 ms (perf/RESULTS.md, "The steady ack's tail: who holds the cores").
# CompilerThreadPriority acts only under ThreadPriorityPolicy=1, which as root also maps Java thread
# priorities to nice values (the GC threads -4); as another user the JVM warns that it may lack the
# permission, and still lowers the compiler threads (raising a nice value needs none).
_JIT_FLAGS = ("-XX:ThreadPriorityPolicy=1", "-XX:CompilerThreadPriority=19")


def _java_cmd(libs: Path, main: str, *args: str, heap: str = "256m", gc_log: Path | None = None) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise KafkaError("cannot start Kafka: `java` (17+) is not on PATH")
    log4j = libs.parent / "log4j2.xml"
    if not log4j.exists():
        log4j.write_text(_LOG4J2)
    gc = [f"-Xlog:gc:file={gc_log}:time,uptime:filecount=2,filesize=10M"] if gc_log is not None else []
    # KAFKA_OPTS, as Kafka's own start scripts read it: the user's JVM flags go last, so theirs win.
    extra = shlex.split(os.environ.get("KAFKA_OPTS", ""))
    return [java, f"-Xmx{heap}", f"-Xms{heap}", *_GC_FLAGS, *_JIT_FLAGS, *gc, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", *extra, "-cp", f"{libs}/*", main, *args]


def start(node: KafkaNode, timeout_s: float = 90.0) -> int:
    """Format storage if new, start the broker, return its PID once it answers."""
    pid = read_pid(node.pid_file)
    if pid is not None:
        return pid
    if port_open("127.0.0.1", node.port):
        raise KafkaError(f"cannot start Kafka: 127.0.0.1:{node.port} is already taken by another process")
    libs = ensure_jars()
    node.data_dir.mkdir(parents=True, exist_ok=True)
    props = node.data_dir / "server.properties"
    props.write_text(node.properties())
    if not (node.data_dir / "logs" / "meta.properties").exists():
        fmt = _java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(props))
        proc = subprocess.run(fmt, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KafkaError(f"cannot format Kafka storage in {node.data_dir}: {proc.stdout}{proc.stderr}")
    pid = spawn(_java_cmd(libs, "kafka.Kafka", str(props), heap=node.heap, gc_log=node.data_dir / "gc.log"),
                node.log_file, node.pid_file)
    if not wait_until(lambda: port_open("127.0.0.1", node.port) or read_pid(node.pid_file) is None, timeout_s):
        stop_pid(pid)
        raise KafkaError(f"Kafka did not listen on {node.port} within {timeout_s:.0f} s; see {node.log_file}")
    if read_pid(node.pid_file) is None:
        raise KafkaError(f"Kafka exited during start-up; see {node.log_file}")
    return pid


def stop(node: KafkaNode) -> bool:
    pid = read_pid(node.pid_file)
    if pid is None:
        return False
    stop_pid(pid, timeout_s=30.0)
    node.pid_file.unlink(missing_ok=True)
    return True


def status(node: KafkaNode) -> dict[str, object]:
    pid = read_pid(node.pid_file)
    return {"running": pid is not None, "pid": pid, "listening": port_open("127.0.0.1", node.port),
            "bootstrap": node.bootstrap, "data_dir": str(node.data_dir)}
