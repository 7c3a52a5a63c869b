"""Faust's Monitor without its per-message bookkeeping.

Faust calls its Monitor sensor for every message in and out, every stream event in and
out, every table read and write and every record its producer sends: counters, per-topic
dicts, timestamps and latency deques that only Faust's own web views and its statsd or
Datadog sensors read. This worker serves neither (its web is its own, its metrics are
``agents.metrics``), and a cut sends one changelog record per segment: the calls were
~2.7 % of the worker's CPU in ``perf/bench_e2e.py --size M`` (py-spy). What Faust itself
reads back from the monitor (the partitions' end and committed offsets) is still kept.
"""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor


class QuietMonitor(Monitor):
    """A Monitor whose per-event hooks record nothing; rebalances, commits and offsets as Faust's."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        pass
