"""The worker's RocksDB tables compress with zstd (tables/rocks_options.py)."""

from __future__ import annotations

from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from tables.rocks_options import use_zstd


def _compression(db_dir: Path) -> str:
    options = next(db_dir.glob("OPTIONS-*")).read_text()
    return next(line.split("=", 1)[1] for line in options.splitlines() if line.strip().startswith("compression="))


def test_faust_opened_tables_use_zstd(tmp_path: Path) -> None:
    use_zstd()
    use_zstd()  # idempotent: patching twice must not wrap twice
    db = RocksDBOptions().open(tmp_path / "t.db")
    db[b"k" * 16] = b"v" * 4096
    db.flush(True)
    db.close()
    assert _compression(tmp_path / "t.db") == "kZSTD"
