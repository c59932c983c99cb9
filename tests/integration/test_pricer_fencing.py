"""The pricer's transactional offset commit carries the group generation and member id (TxnOffsetCommit
v3): a pricer that read a batch under a generation that is over can never commit its offsets."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from services.pricer.group_fenced_offsets import FencedOffsets, GroupMember, StaleGroupMember, member_of
from shared import kafka
from shared.topics import USAGE
from tests.fixtures.polling import eventually_async

pytestmark = pytest.mark.integration


async def _joined(consumer) -> set[TopicPartition]:
    async def assigned() -> set[TopicPartition]:
        await consumer.getmany(timeout_ms=100)
        return consumer.assignment()

    return await eventually_async(assigned, 30, "a partition assignment")


async def _commit(settings, transactional_id: str, offsets: dict[TopicPartition, int], group: str, member: GroupMember) -> None:
    producer = kafka.transactional_producer(settings, transactional_id)
    fenced = FencedOffsets(producer)
    await producer.start()
    try:
        async with producer.transaction():
            await fenced.send_offsets(offsets, group, member)
    finally:
        await producer.stop()


async def test_offsets_of_the_current_member_commit_and_of_an_ended_generation_are_refused(settings):
    """Member A commits under its generation; after B joins, A's commit under the old generation aborts."""
    group = settings.topic("tally-pricer")
    a = kafka.consumer(settings, USAGE, group_id=group)
    b = kafka.consumer(settings, USAGE, group_id=group)
    await a.start()
    try:
        tp = sorted(await _joined(a))[0]
        read_under = member_of(a)  # what a batch fetched now would carry
        await _commit(settings, f"{group}-a", {tp: 5}, group, read_under)

        async def committed() -> int | None:
            return await a.committed(tp)

        # The transaction's markers reach the offsets topic just after the commit returns.
        assert await eventually_async(lambda: _equal(committed, 5), 30, "offset 5 committed") is True
        await b.start()
        try:
            await _joined(b)
            await eventually_async(lambda: _rejoined(a, read_under), 30, "A in the next generation")
            with pytest.raises(StaleGroupMember, match="ILLEGAL_GENERATION"):
                await _commit(settings, f"{group}-a", {tp: 9}, group, read_under)
            assert await a.committed(tp) == 5
            with pytest.raises(StaleGroupMember, match="UNKNOWN_MEMBER_ID"):
                await _commit(settings, f"{group}-a", {tp: 9}, group, GroupMember(member_of(a).generation, "gone-member"))
            assert await a.committed(tp) == 5
        finally:
            await b.stop()
    finally:
        await a.stop()


async def _equal(read, expected: int) -> bool:
    return await read() == expected


async def _rejoined(consumer, before: GroupMember) -> bool:
    await consumer.getmany(timeout_ms=100)
    return member_of(consumer).generation > before.generation


async def test_offsets_read_outside_any_generation_are_never_sent(settings):
    """A batch whose member is unknown (generation -1) is refused before anything reaches the broker."""
    with pytest.raises(StaleGroupMember):
        await _commit(settings, settings.topic("tally-pricer-x"), {TopicPartition(settings.topic(USAGE), 0): 1},
                      settings.topic("tally-pricer"), GroupMember(-1, ""))
