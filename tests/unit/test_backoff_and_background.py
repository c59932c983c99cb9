"""shared.backoff and shared.background: the retry delays and the task tied to a block."""

from __future__ import annotations

import asyncio

import pytest

from shared.backoff import Backoff
from shared.background import background_task


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    """Delays double from `first`, stop growing at `cap`, and start again after reset()."""
    backoff = Backoff(0.5, 3.0)
    assert [backoff.take() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.delay == 0.5


def test_backoff_refuses_a_cap_below_its_first_delay() -> None:
    """A cap under the first delay is a configuration mistake, said at once."""
    with pytest.raises(ValueError, match="0 < first <= cap"):
        Backoff(2.0, 1.0)


def test_a_backoff_from_zero_never_waits() -> None:
    """A first delay of 0 stays 0 (the supervisor's tests retry at once)."""
    backoff = Backoff(0, 15.0)
    assert [backoff.take() for _ in range(3)] == [0, 0, 0]


async def test_background_task_is_cancelled_and_awaited_when_the_block_ends() -> None:
    """The task runs while the block runs and is finished (cancelled) once it is left."""
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with background_task(forever(), name="t") as task:
        await asyncio.wait_for(started.wait(), 5)
        assert not task.done()
    assert task.cancelled()


async def test_background_task_failure_does_not_escape_the_block() -> None:
    """A task that already failed is awaited at exit without raising into the cleanup."""

    async def fails() -> None:
        raise RuntimeError("boom")

    async with background_task(fails(), name="t") as task:
        await asyncio.wait([task], timeout=5)
    assert isinstance(task.exception(), RuntimeError)
