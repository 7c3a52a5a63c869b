"""``metricsflow worker``: one Faust worker process, in the foreground until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from metricsflow.config import Settings
from metricsflow.heap import freeze_long_lived, keep_freed_memory, time_collections
from metricsflow.topics import ensure_topics

log = logging.getLogger(__name__)


def new_event_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """The worker's loop (``Settings.worker_loop``), made the kind every later loop of the process has too.

    Faust runs its Kafka consumer on a loop of its own, in a thread (mode's ``ServiceThread``
    makes it with ``asyncio.new_event_loop()``): with uvloop's policy set, that loop is
    uvloop's as well, not asyncio's pure-Python one (perf/RESULTS.md, "The transport's floor").
    """
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: the worker runs on asyncio's event loop")
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return asyncio.new_event_loop()
    asyncio.set_event_loop_policy(None)
    return asyncio.new_event_loop()


def run(settings: Settings) -> None:
    import faust

    from agents import metrics
    from agents.factory import create_app

    keep_freed_memory()  # queries allocate and free MBs of sample arrays each
    # Create the topics up front so the points/series partition counts are ours, not Faust's guess.
    loop = new_event_loop(settings.worker_loop)
    asyncio.set_event_loop(loop)  # Faust runs on this loop afterwards
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    # These libraries build a record per message at DEBUG; keep them at the configured level.
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    for name in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    freeze_long_lived()  # the libraries' objects, before Faust's first rebalance collects once per table
    time_collections(lambda generation, seconds: metrics.GC_PAUSE.labels(str(generation)).observe(seconds))
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        # Faust has flushed the producer and stopped every service by now; a lingering
        # library thread must not keep a stopped worker alive (seen: minutes after SIGTERM).
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
