"""A topic follower whose fetcher reads nothing while messages wait reconnects; one that moves, or
has nothing to read, does not. The partition rule is shared with the ledger (shared.kafka)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from services.proxy.sync.topic_follower import FollowerStalled, TopicFollower
from shared.kafka import stalled_partitions
from shared.settings import CommonSettings
from tests.fixtures.polling import eventually_async

TP, OTHER = TopicPartition("t", 0), TopicPartition("t", 1)


def test_stalled_partitions_are_those_behind_and_unmoved():
    """A partition is stalled when it is behind its end and its position has not moved since the last check."""
    previous = {TP: 3, OTHER: 5}
    assert stalled_partitions(previous, {TP: 3, OTHER: 6}, {TP: 10, OTHER: 10}) == {TP: 7}
    assert stalled_partitions(previous, {TP: 10, OTHER: 5}, {TP: 10, OTHER: 5}) == {}  # at the end: idle, not stuck
    assert stalled_partitions({}, {TP: 3}, {TP: 10}) == {}  # the first check only remembers


class FakeConsumer:
    """Reads nothing; `moves` makes its position advance by one per poll."""

    def __init__(self, *, position: int, end: int, moves: bool) -> None:
        self.pos, self.end, self.moves, self.polls = position, end, moves, 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.polls += 1
        if self.moves and self.pos < self.end:
            self.pos += 1
        await asyncio.sleep(0.001)  # a poll takes a moment
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.end}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos


def follower() -> TopicFollower:
    f = TopicFollower(CommonSettings(), "entities.v1", stall_check_s=0.02)
    f.apply = lambda raw: None  # type: ignore[method-assign]
    return f


async def test_a_follower_that_reads_nothing_while_messages_wait_reconnects():
    """A fetcher that stays behind without moving raises FollowerStalled, so the follower reconnects."""
    consumer = FakeConsumer(position=3, end=10, moves=False)
    with pytest.raises(FollowerStalled):
        await asyncio.wait_for(follower()._consume(consumer, {TP: 10}), 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("consumer", [FakeConsumer(position=0, end=10_000, moves=True),
                                      FakeConsumer(position=10, end=10, moves=False)], ids=["moving", "at the end"])
async def test_a_follower_that_moves_or_is_at_the_end_carries_on(consumer):
    """A fetcher that keeps moving, or has nothing waiting, is still consuming after some ten stall checks."""
    task = asyncio.create_task(follower()._consume(consumer, {TP: consumer.end}))  # type: ignore[arg-type]
    await eventually_async(lambda: consumer.polls >= 200 or task.done(), 10, "200 polls (some ten stall checks)", 0.005)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
