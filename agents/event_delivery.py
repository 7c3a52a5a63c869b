"""How the Faust consumer hands each Kafka record to the streams: without four tasks per record.

Faust's fetch loop passes every record to the stream conductor through ``Service.wait_first(
callback(record), suspend_flow.wait())``, so a rebalance (``suspend_flow``) or a stop can
interrupt a callback that blocks on a full stream buffer. ``wait_first`` wraps each of those
two awaitables and the service's stopped and crashed events in a task of its own, waits for the
first, and cancels the others: four tasks made and three cancelled per record, ~180 µs of the
≈ 0.46 ms a worker spent per mf.points message together with the rest of Faust's event path
(perf/RESULTS.md, "The consumer's fetches"). The callback almost never blocks: it puts the
event in a stream's buffer that has room.

``deliver_without_tasks`` runs the callback up to its first suspension in the fetch loop's own
task. If it finishes there (the common case), nothing else is made; the suspend-flow coroutine
was never started and is closed. If it suspends, the rest of it, from that very point, goes to
``wait_first`` as before, so a rebalance or a stop interrupts it exactly as it would have.
While the flow is suspended, or the service is stopping, every call keeps Faust's own path.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

_PATCHED = "_mf_delivers_without_tasks"


def deliver_without_tasks(consumer_class: Any) -> None:
    """Make ``consumer_class.wait_first`` finish a record's delivery in place when it can (idempotent)."""
    original = consumer_class.wait_first
    if getattr(original, _PATCHED, False):
        return

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (timeout is None and len(coros) == 2 and _is_suspend_wait(self, coros[1])
                and asyncio.iscoroutine(coros[0]) and not self.suspend_flow.is_set()
                and not self._stopped.is_set() and not self._crashed.is_set()):
            callback, suspended = coros
            try:
                blocked_on = callback.send(None)
            except StopIteration:
                suspended.close()
                return None  # Faust's fetch loop does not read the result
            except BaseException:
                suspended.close()
                raise
            coros = (_resumed(callback, blocked_on), suspended)
        return await original(self, *coros, timeout=timeout)

    setattr(wait_first, _PATCHED, True)
    consumer_class.wait_first = wait_first


def _is_suspend_wait(consumer: Any, coro: Any) -> bool:
    frame = getattr(coro, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is consumer.suspend_flow


async def _resumed(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> Any:
    """Drive ``coro`` on from the suspension that yielded ``blocked_on``, as a task would have."""
    while True:
        try:
            if blocked_on is None:  # a bare yield (asyncio.sleep(0))
                await _yield_once()
            else:
                blocked_on._asyncio_future_blocking = False
                await asyncio.wait((blocked_on,))  # resumes once it is done, whatever its outcome
        except BaseException as exc:
            # Cancelled, as a task is: the future it waits for is cancelled and it sees that there.
            if not (isinstance(exc, asyncio.CancelledError) and blocked_on is not None and blocked_on.cancel()):
                try:
                    blocked_on = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
        try:
            blocked_on = coro.send(None)
        except StopIteration as stop:
            return stop.value


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    yield
