"""The worker's RocksDB tables compress with zstd (tables/rocks_options.py)."""

from __future__ import annotations

from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from tables.rocks_options import BLOCK_SIZE, COLD_TABLE_OPTIONS, ZSTD_LEVEL, table_options, use_zstd


def _option(db_dir: Path, name: str) -> str:
    """One setting as RocksDB wrote it into the DB's OPTIONS file."""
    options = next(db_dir.glob("OPTIONS-*")).read_text()
    return next(line.split("=", 1)[1] for line in options.splitlines() if line.strip().startswith(name + "="))


def test_faust_opened_tables_use_zstd(tmp_path: Path) -> None:
    use_zstd()
    use_zstd()  # idempotent: patching twice must not wrap twice
    db = RocksDBOptions().open(tmp_path / "t.db")
    db[b"k" * 16] = b"v" * 4096
    db.flush(True)
    db.close()
    assert _option(tmp_path / "t.db", "compression") == "kZSTD"


def test_cold_table_options_reach_rocksdb(tmp_path: Path) -> None:
    """A table's Faust ``options`` (as the series table passes them) set block size and zstd level."""
    use_zstd()
    db = RocksDBOptions(**table_options("series")).open(tmp_path / "cold.db")
    db[b"k" * 16] = b"v" * 4096
    db.flush(True)
    db.close()
    assert _option(tmp_path / "cold.db", "compression") == "kZSTD"
    assert _option(tmp_path / "cold.db", "block_size") == str(COLD_TABLE_OPTIONS[BLOCK_SIZE])
    assert f"level={COLD_TABLE_OPTIONS[ZSTD_LEVEL]};" in _option(tmp_path / "cold.db", "compression_opts")
    # and a table without them keeps RocksDB's default block size
    db = RocksDBOptions().open(tmp_path / "hot.db")
    db[b"k"] = b"v"
    db.flush(True)
    db.close()
    assert _option(tmp_path / "hot.db", "block_size") == "4096"
