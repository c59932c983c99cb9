"""The ledger's stall check: a partition with messages waiting whose position has not moved
since the previous check restarts the worker, even while other partitions are being read."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from services.ledger.consumer import Ledger
from services.ledger.errors import ConsumerStalled

A, B = TopicPartition("p.priced.v1", 0), TopicPartition("p.priced.v1", 1)


class Positions:
    """What the check asks of the consumer: end offsets and positions, set by the test."""

    def __init__(self) -> None:
        self.ends: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.down = False

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.down:
            raise KafkaConnectionError("broker gone")
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def ledger(consumer: Positions) -> Ledger:
    made = Ledger(consumer=consumer, producer=None, store=None, metrics=None, topics=[], priced_topic="p.priced.v1",  # type: ignore[arg-type]
                  dlq_topic=None, totals_topic=None, batch_max_events=10, batch_max_ms=10, store_bodies=False,
                  retry_max_delay_s=1.0)
    made.partitions = [A, B]
    return made


async def test_a_partition_behind_that_does_not_move_is_a_stall_while_another_is_read():
    """A partition behind its end whose position has not moved is a stall, though another partition is being read."""
    consumer = Positions()
    consumer.ends = {A: 100, B: 100}
    consumer.positions = {A: 40, B: 10}
    checked = ledger(consumer)
    await checked.check_not_stalled()  # the first look only remembers where each partition was
    consumer.positions = {A: 40, B: 60}  # B is being read, A is not
    with pytest.raises(ConsumerStalled, match=r"^60 messages waiting on 1 partition\(s\) but none read .*\['p\.priced\.v1\[0\]'\]$"):
        await checked.check_not_stalled()


async def test_partitions_that_move_or_have_nothing_waiting_are_not_stalls():
    """Partitions that moved since the last check, or have nothing waiting, pass the check."""
    consumer = Positions()
    consumer.ends = {A: 100, B: 50}
    consumer.positions = {A: 40, B: 50}
    checked = ledger(consumer)
    await checked.check_not_stalled()
    consumer.positions = {A: 41, B: 50}  # A moved; B has nothing waiting
    await checked.check_not_stalled()
    consumer.ends = {A: 41, B: 50}
    await checked.check_not_stalled()  # A caught up and stands still: nothing waiting


async def test_end_offsets_that_cannot_be_read_are_a_stall():
    """End offsets the broker cannot give are a stall, so the worker restarts."""
    consumer = Positions()
    consumer.down = True
    with pytest.raises(ConsumerStalled, match="cannot read the topics' end offsets"):
        await ledger(consumer).check_not_stalled()


async def test_a_position_that_stays_unknown_is_a_stall(monkeypatch: pytest.MonkeyPatch):
    """aiokafka's position() waits without end for a partition awaiting an offset reset."""
    import asyncio

    import services.ledger.kafka_guards as kafka_guards

    class Resetting(Positions):
        async def position(self, tp: TopicPartition) -> int:
            await asyncio.Event().wait()  # never set: a reset that never completes
            return 0

    monkeypatch.setattr(kafka_guards, "POSITION_TIMEOUT_S", 0.05)
    consumer = Resetting()
    consumer.ends = {A: 1, B: 1}
    with pytest.raises(ConsumerStalled, match=r"^the position of p\.priced\.v1\[0\] stayed unknown for 0\.05s$"):
        await ledger(consumer).check_not_stalled()
