"""agents.quiet_monitor: the worker's Faust app counts nothing per event, and Faust's own offsets still work."""

from __future__ import annotations

from types import SimpleNamespace

from faust.sensors.monitor import Monitor
from faust.types import TP

from agents.factory import create_app
from agents.quiet_monitor import QuietMonitor
from metricsflow.config import Settings

TP0 = TP("mf.points", 0)


class _Owner:
    pass


class _Stream:  # the monitor keys its per-stream and per-task counts by weak references
    def __init__(self) -> None:
        self.task_owner = _Owner()


def _events(monitor: Monitor) -> dict[str, int]:
    message = SimpleNamespace(time_in=None, time_out=None, time_total=None)
    stream = _Stream()
    monitor.on_message_in(TP0, 5, message)
    state = monitor.on_stream_event_in(TP0, 5, stream, None)
    monitor.on_stream_event_out(TP0, 5, stream, None, state)
    monitor.on_message_out(TP0, 5, message)
    sent = monitor.on_send_initiated(None, "mf-segments-changelog", None, 16, 100)
    monitor.on_send_completed(None, sent, None)
    return {"received": monitor.messages_received_total, "events": monitor.events_total,
            "sent": monitor.messages_sent, "send_latencies": len(monitor.send_latency)}


def test_faust_monitor_counts_what_the_quiet_one_does_not() -> None:
    assert _events(Monitor()) == {"received": 1, "events": 1, "sent": 1, "send_latencies": 1}
    assert _events(QuietMonitor()) == {"received": 0, "events": 0, "sent": 0, "send_latencies": 0}


def test_quiet_monitor_keeps_the_offsets_faust_reads() -> None:
    monitor = QuietMonitor()
    monitor.track_tp_end_offset(TP0, 42)
    monitor.on_tp_commit({TP0: 40})
    assert monitor.tp_end_offsets[TP0] == 42
    assert monitor.tp_committed_offsets[TP0] == 40


def test_the_worker_app_uses_it(tmp_path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path), kafka_bootstrap="127.0.0.1:1"))
    assert isinstance(app.monitor, QuietMonitor)
