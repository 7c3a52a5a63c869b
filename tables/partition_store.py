"""Direct, partition-explicit access to a Faust RocksDB table.

Faust's ``table[key] = value`` needs an event in context to know the partition;
the worker's cut runs per partition on its own schedule, so it names the
partition itself. Writes go to the local RocksDB of that partition and to the
same partition of the table's changelog (the "segment topic"), exactly what
Faust's own ``__setitem__`` does; Faust's recovery restores them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

from faust.tables.base import Collection

from tables.keys import FAUST_RESERVED_PREFIX


class PartitionStore:
    def __init__(self, table: Collection) -> None:
        self._table = table

    @property
    def name(self) -> str:
        return self._table.name

    def _db(self, partition: int):
        return self._table.data._db_for_partition(partition)  # type: ignore[attr-defined]

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._db(partition)[key] = value
        self._table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")

    async def flush(self) -> None:
        """Wait until every changelog write so far is acknowledged by Kafka."""
        await self._table.app.producer.flush()

    def delete(self, partition: int, key: bytes) -> None:
        db = self._db(partition)
        del db[key]
        # A tombstone, so compaction removes the key from the changelog too.
        self._table.send_changelog(partition, key, None, key_serializer="raw", value_serializer="raw")

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._db(partition).get(key)

    def scan(self, partition: int, lo: bytes = b"", hi: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items with lo <= key < hi in key order (Faust's bookkeeping key excluded)."""
        it = self._db(partition).iter()
        if lo:
            it.seek(lo)
        else:
            it.seek_to_first()
        while it.valid():
            key = it.key()
            if hi is not None and key >= hi:
                break
            if not key.startswith(FAUST_RESERVED_PREFIX):
                yield key, it.value()
            it.next()
