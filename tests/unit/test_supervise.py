"""The supervisor restarts a failed worker, including one out of which a CancelledError leaked
that nobody asked for, and ends only when it is itself cancelled; stopping Kafka clients stops
each of them whatever the others raise."""

from __future__ import annotations

import asyncio

import pytest

from shared.kafka import stop_clients
from shared.supervise import supervise


async def test_a_cancelled_error_leaked_by_the_worker_restarts_it():
    """A CancelledError the worker raises without being cancelled restarts it, like any other failure."""
    calls = []

    async def worker() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise asyncio.CancelledError  # as aiokafka's consumer.stop() does

    await asyncio.wait_for(supervise("w", worker, first_delay=0, max_delay=0), 5)
    assert calls == [0, 1, 2]


async def test_an_exception_restarts_the_worker_and_fatal_ones_end_it():
    """An ordinary exception restarts the worker; one of the fatal types ends the supervisor with that exception."""
    calls = []

    async def worker() -> None:
        calls.append(len(calls))
        raise RuntimeError("boom") if len(calls) < 2 else KeyError("fatal")

    with pytest.raises(KeyError):
        await asyncio.wait_for(supervise("w", worker, first_delay=0, max_delay=0, fatal=(KeyError,)), 5)
    assert calls == [0, 1]


async def test_cancelling_the_supervisor_ends_it():
    """Cancelling the supervisor while its worker runs ends it as cancelled."""
    started = asyncio.Event()

    async def worker() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("w", worker))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancellation_the_worker_turned_into_another_error_still_ends_the_supervisor():
    """A worker that turns the supervisor's cancellation into another error is not restarted: the supervisor ends."""
    # SIGTERM cancels the supervisor; a wait_for whose timeout fires at that moment turns it into a TimeoutError.
    started, calls = asyncio.Event(), []

    async def worker() -> None:
        calls.append(len(calls))
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if len(calls) == 1:  # the first run swallows it; a restarted one would wait for good
                raise TimeoutError("the cancellation, swallowed") from None
            raise

    task = asyncio.create_task(supervise("w", worker, first_delay=0, max_delay=0))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:  # restarted instead of ending: stop it for the report below
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (task.cancelled(), calls) == (True, [0])


class FakeClient:
    def __init__(self, raises: BaseException | None = None, blocks: bool = False) -> None:
        self.raises, self.blocks, self.stopped = raises, blocks, False
        self.entered = asyncio.Event()

    async def stop(self) -> None:
        self.entered.set()
        if self.blocks:
            await asyncio.Event().wait()
        self.stopped = True
        if self.raises is not None:
            raise self.raises


@pytest.mark.parametrize("error", [asyncio.CancelledError(), RuntimeError("stop failed")])
async def test_every_client_is_stopped_whatever_the_first_raises(error):
    """Every client is stopped even when the first one's stop raises CancelledError or another error."""
    first, second = FakeClient(raises=error), FakeClient()
    await stop_clients(first, second)  # type: ignore[arg-type]
    assert (first.stopped, second.stopped) == (True, True)


async def test_our_own_cancellation_still_stops_the_others_then_propagates():
    """Cancelled while one client's stop blocks, stop_clients still stops the others, then raises CancelledError."""
    first, second = FakeClient(blocks=True), FakeClient()
    task = asyncio.create_task(stop_clients(first, second))  # type: ignore[arg-type]
    await asyncio.wait_for(first.entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (first.stopped, second.stopped) == (False, True)
