"""Settled RocksDB sizes: open a copy of a worker's table DBs offline with Faust's own options,
flush the memtables and compact the whole key range, then measure (du -sb semantics).

The worker keeps running on the original; this works on a copy taken while it was idle.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def compact_copy(worker_dir: Path, dest: Path) -> dict[str, dict[str, int]]:
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import Rdict

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(worker_dir, dest, ignore=shutil.ignore_patterns("LOCK"))
    for db_dir in sorted(dest.rglob("*.db")):
        if not db_dir.is_dir():
            continue
        db = Rdict(str(db_dir), options=RocksDBOptions().as_options())
        db.flush(True)
        db.compact_range(None, None)
        db.close()
    return {}
