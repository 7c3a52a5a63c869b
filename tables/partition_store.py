"""Direct, partition-explicit access to a Faust RocksDB table.

Faust's ``table[key] = value`` needs an event in context to know the partition;
the worker's cut runs per partition on its own schedule, so it names the
partition itself. Writes go to the local RocksDB of that partition and to the
same partition of the table's changelog (the "segment topic"), exactly what
Faust's own ``__setitem__`` does; Faust's recovery restores them unchanged.

A *batched* store (the tables a cut or seal writes: a record per series) holds the
changelog records of its puts until ``send_batched``, which hands them to the Kafka
client as record batches, one per partition and megabyte, instead of one Faust
message each: Faust's per-record path (a future message, its buffer, a callback
that writes the persisted offset to RocksDB) was ~10 % of the worker's CPU under a
bulk load (perf/RESULTS.md, "Changelog records in batches"). The persisted offset
is written once per batch when Kafka acknowledges it, as Faust does per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

from faust.tables.base import Collection
from faust.types import TP
from rocksdict import WriteBatch

from tables.keys import FAUST_RESERVED_PREFIX


class PartitionStore:
    def __init__(self, table: Collection, batched: bool = False) -> None:
        self._table = table
        self._batched = batched
        self._unsent: dict[int, list[tuple[bytes, bytes | None]]] = {}  # None: a tombstone

    @property
    def name(self) -> str:
        return self._table.name

    def _db(self, partition: int):
        return self._table.data._db_for_partition(partition)  # type: ignore[attr-defined]

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._db(partition)[key] = value
        if self._batched:
            self._unsent.setdefault(partition, []).append((key, value))
        else:
            self._table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")

    def put_many(self, partition: int, items: Sequence[tuple[bytes, bytes]]) -> None:
        """``put`` of every item, into RocksDB as one write batch: a cut writes a segment per
        series, and a write each took about twice the CPU of a batched one (8 against 4 µs for
        500-byte values)."""
        if not items:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            batch.put(key, value)
        self._db(partition).write(batch)
        if self._batched:
            self._unsent.setdefault(partition, []).extend(items)
        else:
            for key, value in items:
                self._table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")

    def holds(self, partition: int) -> bool:
        """Whether changelog records of ``partition`` wait for ``send_batched``."""
        return bool(self._unsent.get(partition))

    async def send_batched(self) -> list[asyncio.Future[Any]]:
        """Hand the changelog records held since the last call to the Kafka client, in put order;
        the futures of their batches (a flush of the client waits for them too)."""
        if not self._unsent:
            return []
        unsent, self._unsent = self._unsent, {}
        client = self._table.app.producer._ensure_producer()  # aiokafka's, whose send_batch skips Faust
        topic = self._table.changelog_topic.get_topic_name()
        futures = []
        for partition, records in unsent.items():
            batch, count = client.create_batch(), 0
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
                    futures.append(await self._send(client, batch, topic, partition, count))
                    batch, count = client.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a {len(value)}-byte record does not fit a changelog batch")
                count += 1
            futures.append(await self._send(client, batch, topic, partition, count))
        return futures

    async def _send(self, client: Any, batch: Any, topic: str, partition: int, count: int) -> asyncio.Future[Any]:
        future = await client.send_batch(batch, topic, partition=partition)
        tp = TP(topic, partition)

        def acked(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None and done.result() is not None:
                # The last offset of the batch: what Faust's callback writes for the batch's last record.
                self._table.data.set_persisted_offset(tp, done.result().offset + count - 1)

        future.add_done_callback(acked)
        return future

    async def flush(self) -> None:
        """Wait until every changelog write so far is acknowledged by Kafka."""
        await self._table.app.producer.flush()

    def flush_memtables(self) -> int:
        """Write the memtables of every open partition DB to SST files (the tables keep no
        write-ahead log: ``tables.rocks_options.skip_wal``); how many DBs were flushed.
        RocksDB lets another thread do this while the loop's thread writes."""
        dbs = list(getattr(self._table.data, "_dbs", {}).values())  # Faust's open DBs by partition
        for db in dbs:
            db.flush(True)
        return len(dbs)

    def delete(self, partition: int, key: bytes) -> None:
        db = self._db(partition)
        del db[key]
        # A tombstone, so compaction removes the key from the changelog too.
        self._table.send_changelog(partition, key, None, key_serializer="raw", value_serializer="raw")

    def delete_many(self, partition: int, keys: Sequence[bytes]) -> None:
        """``delete`` of every key, from RocksDB as one write batch; a batched store's tombstones go
        with its other held records at the next ``send_batched`` (a seal deletes every segment
        of the blocks it folded, 1-24 per series, and Faust's path cost a record each)."""
        if not keys:
            return
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self._db(partition).write(batch)
        if self._batched:
            self._unsent.setdefault(partition, []).extend((key, None) for key in keys)
        else:
            for key in keys:
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
