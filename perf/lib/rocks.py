"""Settled RocksDB sizes: open a copy of a worker's table DBs offline with Faust's own options,
flush the memtables and compact the whole key range, then measure (du -sb semantics).

The worker keeps running on the original; this works on a copy taken while it was idle.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TABLES = ("wal", "cutmarks", "chunks", "segments", "rollup_1m", "rollup_1h", "series", "alerts", "rule_partials")


def compact_copy(worker_dir: Path, dest: Path) -> dict[str, dict[str, int]]:
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import Rdict

    from tables.rocks_options import table_options, use_zstd

    use_zstd()  # the worker's own options

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(worker_dir, dest, ignore=shutil.ignore_patterns("LOCK"))
    for db_dir in sorted(dest.rglob("*.db")):
        if not db_dir.is_dir():
            continue
        options = table_options(table_of(db_dir)) or {}
        db = Rdict(str(db_dir), options=RocksDBOptions(**options).as_options())
        db.flush(True)
        db.compact_range(None, None)
        db.close()
    return {}


def table_of(db_dir: Path) -> str:
    """The worker table a RocksDB directory belongs to (``…-series-3.db`` → ``series``)."""
    name = db_dir.name.rsplit("-", 1)[0]
    return next((t for t in TABLES if name == t or name.endswith("-" + t) or name.endswith("." + t)), name)


def table_sizes(worker_dir: Path) -> dict[str, dict[str, int]]:
    """Bytes per Faust table (all partitions), split into RocksDB .sst / .log (its WAL) / other."""
    out: dict[str, dict[str, int]] = {}
    for db in worker_dir.rglob("*.db"):
        if not db.is_dir():
            continue
        t = table_of(db)
        d = out.setdefault(t, {"total": 0, "sst": 0, "log": 0, "other": 0})  # total = sst + log (data)
        for f in db.rglob("*"):
            if f.is_file():
                size = f.stat().st_size
                kind = "sst" if f.suffix == ".sst" else "log" if f.suffix == ".log" else "other"
                d[kind] += size  # "other": MANIFEST, OPTIONS, info LOG files (not data)
                if kind != "other":
                    d["total"] += size
    return out


def kafka_topic_sizes(kafka_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    logs = kafka_dir / "logs"
    if not logs.exists():
        return out
    for d in logs.iterdir():
        if d.is_dir() and "-" in d.name:
            topic = d.name.rsplit("-", 1)[0]  # segment data only: .index/.timeindex are preallocated
            out[topic] = out.get(topic, 0) + sum(f.stat().st_size for f in d.glob("*.log"))
    return out
