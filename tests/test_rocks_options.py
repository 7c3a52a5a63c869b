"""The worker's RocksDB tables compress with zstd and write no log (tables/rocks_options.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from faust.stores.rocksdb import RocksDBOptions

from tables.rocks_options import BLOCK_SIZE, COLD_TABLE_OPTIONS, ZSTD_LEVEL, skip_wal, table_options, use_zstd


def _option(db_dir: Path, name: str) -> str:
    """One setting as RocksDB wrote it into the DB's OPTIONS file."""
    options = next(db_dir.glob("OPTIONS-*")).read_text()
    return next(line.split("=", 1)[1] for line in options.splitlines() if line.strip().startswith(name + "="))


def _flushed(path: Path, **options: int) -> None:
    """A DB opened as Faust opens a table with ``options``, one 4 KB value written and flushed."""
    db = RocksDBOptions(**options).open(path)
    db[b"k" * 16] = b"v" * 4096
    db.flush(True)
    db.close()


def test_faust_opened_tables_use_zstd(tmp_path: Path) -> None:
    use_zstd()
    use_zstd()  # idempotent: patching twice must not wrap twice
    _flushed(tmp_path / "t.db")
    assert _option(tmp_path / "t.db", "compression") == "kZSTD"


def test_cold_table_options_reach_rocksdb(tmp_path: Path) -> None:
    """A table's Faust ``options`` (as the series table passes them) set block size and zstd level."""
    use_zstd()
    _flushed(tmp_path / "cold.db", **table_options("series"))
    assert _option(tmp_path / "cold.db", "compression") == "kZSTD"
    assert _option(tmp_path / "cold.db", "block_size") == str(COLD_TABLE_OPTIONS[BLOCK_SIZE])
    assert f"level={COLD_TABLE_OPTIONS[ZSTD_LEVEL]};" in _option(tmp_path / "cold.db", "compression_opts")
    # and a table without them keeps RocksDB's default block size
    _flushed(tmp_path / "hot.db")
    assert _option(tmp_path / "hot.db", "block_size") == "4096"


def test_the_segments_table_compresses_with_lz4(tmp_path: Path) -> None:
    """Segments live until their block is sealed: LZ4, a fifth of zstd's flush CPU, in 16 KB blocks."""
    use_zstd()
    _flushed(tmp_path / "segments.db", **table_options("segments"))
    assert _option(tmp_path / "segments.db", "compression") == "kLZ4Compression"
    assert _option(tmp_path / "segments.db", "block_size") == "16384"


_CRASHING_WRITER = """
import os, sys
sys.path.insert(0, {repo!r})
from faust.stores.rocksdb import RocksDBOptions
from rocksdict import WriteBatch
from tables.rocks_options import skip_wal
if {skip}:
    skip_wal()
db = RocksDBOptions().open({path!r})
db[b"put"] = b"v" * 1000
batch = WriteBatch(raw_mode=True)
batch.put(b"batched", b"w" * 1000)
db.write(batch)
os._exit(0)  # like kill -9: no close, no flush
"""


@pytest.mark.parametrize("skip", [False, True])
def test_tables_write_without_a_write_ahead_log(tmp_path: Path, skip: bool) -> None:
    """Puts and batch writes go to the memtable only: a process that dies without closing
    leaves nothing behind (the changelog recovers the table); RocksDB's defaults keep them."""
    path = str(tmp_path / "t.db")
    repo = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER.format(repo=repo, skip=skip, path=path)],
                   check=True, timeout=60)
    db = RocksDBOptions().open(Path(path))
    found = (db.get(b"put"), db.get(b"batched"))
    db.close()
    assert found == ((None, None) if skip else (b"v" * 1000, b"w" * 1000))


def test_a_closed_table_keeps_what_it_held_without_a_log(tmp_path: Path) -> None:
    skip_wal()
    skip_wal()  # idempotent
    db = RocksDBOptions().open(tmp_path / "t.db")
    db[b"k"] = b"v"
    db.close()  # flushes the memtable: nothing else would keep it
    db = RocksDBOptions().open(tmp_path / "t.db")
    assert db.get(b"k") == b"v"
    db.close()
