"""agents.event_delivery: a record's callback finished in place, or handed to wait_first where it stopped."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from mode import Service
from mode.utils.locks import Event

from agents.event_delivery import deliver_without_tasks


class Delivering(Service):
    """Stands in for Faust's consumer: a service with a suspend_flow event whose fetch loop calls
    ``self.wait_first(callback(record), self.suspend_flow.wait())``."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()

    async def deliver(self, callback: Any, record: Any) -> Any:
        return await self.wait_first(callback(record), self.suspend_flow.wait())


deliver_without_tasks(Delivering)
deliver_without_tasks(Delivering)  # idempotent


def _counting_tasks(loop: asyncio.AbstractEventLoop) -> list[int]:
    made = [0]

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        made[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return made


def test_a_callback_that_does_not_wait_is_finished_without_a_task() -> None:
    got: list[int] = []

    async def callback(record: int) -> None:
        got.append(record)

    async def scenario() -> int:
        made = _counting_tasks(asyncio.get_running_loop())
        service = Delivering()
        for record in range(5):
            await service.deliver(callback, record)
        return made[0]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a suspend-flow coroutine never awaited would warn
        assert asyncio.run(scenario()) == 0
    assert got == [0, 1, 2, 3, 4]


def test_a_callback_that_waits_goes_on_from_where_it_stopped() -> None:
    steps: list[str] = []

    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        made = _counting_tasks(loop)
        room = loop.create_future()

        async def callback(record: str) -> None:
            steps.append(f"{record} started")
            await asyncio.sleep(0)  # a bare yield
            steps.append(f"{record} waits")
            value = await room  # a stream buffer without room, say
            steps.append(f"{record} put {value}")

        service = Delivering()
        delivery = asyncio.ensure_future(service.deliver(callback, "r1"))
        for _ in range(10):
            await asyncio.sleep(0)
        assert steps == ["r1 started", "r1 waits"] and not delivery.done()
        room.set_result("now")
        await asyncio.wait_for(delivery, 5)
        return steps, made[0]

    steps, made = asyncio.run(scenario())
    assert steps == ["r1 started", "r1 waits", "r1 put now"]
    assert made > 1  # it went through wait_first's tasks


def test_a_suspended_flow_interrupts_a_waiting_callback_as_before() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        never = asyncio.get_running_loop().create_future()

        async def callback(record: str) -> None:
            try:
                await never
            except asyncio.CancelledError:
                seen.append(f"{record} cancelled")
                raise

        service = Delivering()
        delivery = asyncio.ensure_future(service.deliver(callback, "r1"))
        for _ in range(5):
            await asyncio.sleep(0)
        service.suspend_flow.set()  # a rebalance
        await asyncio.wait_for(delivery, 5)
        for _ in range(5):
            await asyncio.sleep(0)
        assert never.cancelled()  # as a task's cancel does to the future it waits for
        return seen

    assert asyncio.run(scenario()) == ["r1 cancelled"]


@pytest.mark.parametrize("waits_first", [False, True])
def test_a_callback_error_reaches_the_fetch_loop(waits_first: bool) -> None:
    async def scenario() -> None:
        async def callback(record: str) -> None:
            if waits_first:
                await asyncio.sleep(0.001)
            raise ValueError(record)

        with pytest.raises(ValueError, match="r1"):
            await Delivering().deliver(callback, "r1")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(scenario())


def test_a_suspended_flow_keeps_fausts_own_path() -> None:
    async def scenario() -> int:
        made = _counting_tasks(asyncio.get_running_loop())

        async def callback(record: str) -> None:
            return None

        service = Delivering()
        service.suspend_flow.set()
        await service.deliver(callback, "r1")
        return made[0]

    assert asyncio.run(scenario()) >= 4  # the callback, the suspend wait, stopped and crashed
