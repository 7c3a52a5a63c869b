"""Redis from Debian's redis-server, on 127.0.0.1, when the machine has it.

Collectors use it for the shared series registry and cardinality guardrails and
keep working without it, so a missing binary is reported, not fatal.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from metricsflow.stack.process import port_open, read_pid, spawn, stop_pid, wait_until


@dataclass(frozen=True, slots=True)
class RedisNode:
    data_dir: Path
    port: int = 6379

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"


def available() -> bool:
    return shutil.which("redis-server") is not None


def start(node: RedisNode, timeout_s: float = 15.0) -> int | None:
    """Start redis-server unless running; None when the binary is missing or the port is taken."""
    pid = read_pid(node.pid_file)
    if pid is not None:
        return pid
    binary = shutil.which("redis-server")
    if binary is None or port_open("127.0.0.1", node.port):
        return None
    node.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", "127.0.0.1", "--port", str(node.port), "--dir", str(node.data_dir),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"]
    pid = spawn(argv, node.data_dir / "redis.log", node.pid_file)
    if not wait_until(lambda: port_open("127.0.0.1", node.port), timeout_s):
        stop_pid(pid)
        return None
    return pid


def stop(node: RedisNode) -> bool:
    pid = read_pid(node.pid_file)
    if pid is None:
        return False
    stop_pid(pid)
    node.pid_file.unlink(missing_ok=True)
    return True
