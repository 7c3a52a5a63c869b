"""How the worker's Kafka consumer fetches: how long the broker may hold a fetch, and how much
it should gather first.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. The Kafka client keeps one
fetch in flight per broker and leaves out the partitions whose records the application
has not consumed yet; when every mf.points partition still had records, the fetch held
only quiet topics (mf.series, mf.ingest, the rule partials), and the broker kept it for
the full 1.5 s while mf.points filled up behind it. Under steady load the worker then
consumed in bursts every ~1.6 s, and freshness was a 0–1.6 s sawtooth
(perf/RESULTS.md, "Changelog records in batches, fetches no longer held 1.5 s"). A short
wait adds empty fetches to an idle worker: at 100 ms it used 5.4 % of a core instead of
3.2 %, at 250 ms 2.0 %.

Faust leaves ``fetch_min_bytes`` at 1, so a busy worker sends a fetch for every few
messages that arrive; each costs a request encoded and decoded in Python and a socket
write, and the broker's work to answer it. With messages of 250 points that was ~40 % of
the worker's CPU (perf/RESULTS.md, "... fetches sized to the load"). ``FetchSizer`` asks the
broker to gather ``fill_s`` worth of the bytes the worker consumed in the last second, and
a quiet worker still gets each record at once. The worker counts decompressed bytes and
the broker compressed ones: with the collector's zstd batches (a quarter to two fifths of the
bytes) a fetch gathers 2.5-4 times ``fill_s``, never more than the 250 ms max wait.

Faust "pauses" a partition only in its own bookkeeping: the Kafka client goes on fetching
every assigned partition, the changelogs of the worker's own tables included, whose records
only a recovery reads. Each such partition rode in every fetch request and response (~80 of
them where the streams need 32), and the records of a changelog the worker had written
stayed parked in the client unread. ``stop_fetching_own_changelogs`` pauses them in the
Kafka client once Faust has recovered the tables (perf/RESULTS.md, "The consumer's fetches").
Faust's livelock check then has to leave them alone: it logs an error every 2.5 s for each
assigned partition the client has not fetched for ``stream_processing_timeout`` (5 minutes);
``short_fetch_waits`` also makes it skip the partitions paused in the client.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from aiokafka import TopicPartition

FETCH_MAX_WAIT_MS = 250
FETCH_FILL_S = 0.03  # MF_FETCH_FILL_MS's default
FETCH_MIN_BYTES_MAX = 1 << 20
_PATCHED = "_mf_fetch_max_wait"
_PATCHED_CHECK = "_mf_skips_paused"
_CONSUMERS: weakref.WeakSet[Any] = weakref.WeakSet()  # the worker consumers created in this process


def short_fetch_waits(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make the worker consumers Faust creates from now on wait at most ``max_wait_ms`` per fetch,
    let ``FetchSizer`` size their fetches, and keep Faust's livelock check off the partitions
    paused in their client (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, _PATCHED, False):
        return

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        _CONSUMERS.add(consumer)
        return consumer

    setattr(create_worker_consumer, _PATCHED, True)
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    skip_paused_in_livelock_check(AIOKafkaConsumerThread)


def skip_paused_in_livelock_check(thread_class: Any) -> None:
    """Make Faust's per-partition livelock check of ``thread_class`` leave out partitions paused in
    the Kafka client (idempotent; ``short_fetch_waits`` applies it to Faust's consumer thread)."""
    verify = thread_class.verify_event_path
    if getattr(verify, _PATCHED_CHECK, False):
        return

    def verify_event_path(self: Any, now: float, tp: Any) -> None:
        if not paused_in_client(self, tp):  # a paused partition is not fetched on purpose
            verify(self, now, tp)

    setattr(verify_event_path, _PATCHED_CHECK, True)
    thread_class.verify_event_path = verify_event_path


def paused_in_client(thread: Any, tp: Any) -> bool:
    """Whether the Kafka client of Faust's consumer ``thread`` holds ``tp`` paused."""
    state_of = getattr(getattr(thread, "_consumer", None), "_subscription", None)  # the client's, also its fetcher's
    subscription = state_of.subscription if state_of is not None else None
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return False
    state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
    return bool(state is not None and state.paused)


def fetch_min_bytes(bytes_per_s: float, fill_s: float = FETCH_FILL_S, cap: int = FETCH_MIN_BYTES_MAX) -> int:
    """What a fetch should gather: ``fill_s`` of the consumed rate, at least 1 byte (answer at once)."""
    return max(1, min(cap, int(bytes_per_s * fill_s)))


class FetchSizer:
    """Counts the bytes the worker consumes; ``adjust`` (once a second) sets the consumers' fetch size.

    The broker answers a fetch when it holds ``fetch_min_bytes`` or after ``FETCH_MAX_WAIT_MS``:
    when the load stops, the fetches in flight wait at most that long, and the next ``adjust`` asks
    for 1 byte again.
    """

    def __init__(self, fill_s: float = FETCH_FILL_S, cap: int = FETCH_MIN_BYTES_MAX) -> None:
        self._fill_s = fill_s
        self._cap = cap
        self._bytes = 0
        self._since = time.monotonic()

    def consumed(self, nbytes: int) -> None:
        self._bytes += nbytes

    def adjust(self) -> int:
        """Set every worker consumer's fetch size from the rate since the last call; returns it."""
        now = time.monotonic()
        rate = self._bytes / max(now - self._since, 1e-3)
        self._bytes, self._since = 0, now
        size = fetch_min_bytes(rate, self._fill_s, self._cap)  # a fill of 0 gives 1: answer at once
        for consumer in list(_CONSUMERS):
            consumer._fetch_min_bytes = size  # for a fetcher started later
            fetcher = getattr(consumer, "_fetcher", None)
            if fetcher is not None:
                # Read by the consumer thread for every fetch request it builds; one attribute store.
                fetcher._fetch_min_bytes = size
        return size


def consumer_partitions(standby: set[tuple[str, int]]) -> dict[tuple[str, str], int]:
    """Partitions the worker consumers hold, by kind and state (``fetched``|``paused``).

    Kinds: ``stream`` (a topic the agents consume), ``standby`` (a changelog replicated for
    another worker's table, ``standby`` holds them as (topic, partition)), ``changelog`` (one
    of the tables this worker owns).
    """
    kinds = ("stream", "standby", "changelog")
    out = {(kind, state): 0 for kind in kinds for state in ("fetched", "paused")}
    for consumer in list(_CONSUMERS):
        try:  # read from the event loop's thread while the consumer's thread may reassign: counted next second
            assigned, paused = set(consumer.assignment()), consumer.paused()
        except Exception:  # a set changed size, or a partition left the assignment mid-read
            continue
        for tp in assigned:
            if not tp.topic.endswith("-changelog"):
                kind = "stream"
            else:
                kind = "standby" if (tp.topic, tp.partition) in standby else "changelog"
            out[kind, "paused" if tp in paused else "fetched"] += 1
    return out


async def stop_fetching_own_changelogs(app: Any) -> int:
    """Pause, in the Kafka client, the changelog partitions of the tables this worker owns as active;
    returns how many. Standby partitions go on being fetched: they replicate other workers' tables.

    Call once the tables are recovered (Faust's on_rebalance_complete): a new assignment gives
    the client fresh, unpaused partitions, so a recovery after a rebalance reads them again.
    """
    recovery = app.tables.recovery
    own = {TopicPartition(tp.topic, tp.partition) for tp in recovery.active_tps - recovery.standby_tps}
    if not own:
        return 0
    thread = app.consumer._thread

    def pause() -> int:  # in the consumer's thread: the client's pause creates a future on its loop
        consumer = thread._ensure_consumer()
        todo = own & consumer.assignment()
        consumer.pause(*todo)
        return len(todo)

    return int(await thread.call_thread(pause))
