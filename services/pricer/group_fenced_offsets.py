"""The pricer's input offsets committed in its transaction with the consumer group's generation and
member id (KIP-447), so the broker refuses a commit from a pricer that lost its partitions.

aiokafka 0.14 sends TxnOffsetCommit v0, which carries only the group id: a pricer paused past its
session timeout (SIGSTOP, a long GC, a network cut) could, once resumed, commit a transaction whose
offsets cover partitions the group had given to another pricer, which read them again from the old
committed offsets: every event of that stretch priced twice. Version 3 of the request adds the
generation and member id; the group coordinator checks them against the group's current ones and
answers ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID, and the transaction aborts.

`fence_offset_commits(producer)` makes one producer send version 3 with the member given to
`send_offsets`; other producers in the process are untouched."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as Errors
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

# The coordinator's answers that mean: this member no longer owns what it commits
# (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID).
STALE_MEMBER_CODES = {22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 27: "REBALANCE_IN_PROGRESS", 82: "FENCED_INSTANCE_ID"}
NO_LEADER_EPOCH = -1


class StaleGroupMember(Errors.KafkaError):
    """The batch was read under a group generation that is over: its transaction aborts."""


@dataclass(frozen=True)
class GroupMember:
    """Who read the batch: the group's generation and this consumer's member id at the time."""

    generation: int
    member_id: str
    group_instance_id: str | None = None


class TxnOffsetCommitResponse_v3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):
    API_KEY = 28
    API_VERSION = 3
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("committed_offset", Int64), ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")), ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class FencedTxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):
    """Only version 3 (Kafka 2.5+): an older broker fails the commit rather than skip the check."""

    API_KEY = 28

    def __init__(self, transactional_id: str, group_id: str, producer_id: int, producer_epoch: int, member: GroupMember,
                 topics: list[tuple[str, list[tuple[int, int, str]]]]) -> None:
        self._fields = (transactional_id, group_id, producer_id, producer_epoch, member.generation, member.member_id,
                        member.group_instance_id,
                        [(topic, [(p, offset, NO_LEADER_EPOCH, metadata, {}) for p, offset, metadata in parts], {})
                         for topic, parts in topics],
                        {})

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        return request_struct_class(*self._fields)


class _V0Shaped:
    """A v3 response seen as the v0 one aiokafka's handler reads (topic, [(partition, error)])."""

    def __init__(self, response: Any) -> None:
        self.errors = [(name, [(p, code) for p, code, _ in partitions]) for name, partitions, _ in response.topics]


class _FencedHandler(TxnOffsetCommitHandler):
    def __init__(self, sender: Any, offsets: Mapping[TopicPartition, Any], group_id: str, member: GroupMember) -> None:
        super().__init__(sender, offsets, group_id)
        self._member = member

    def create_request(self) -> FencedTxnOffsetCommitRequest:
        txn_manager = self._sender._txn_manager
        by_topic: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            by_topic[tp.topic].append((tp.partition, offset.offset, offset.metadata))
        return FencedTxnOffsetCommitRequest(txn_manager.transactional_id, self._group_id, txn_manager.producer_id,
                                            txn_manager.producer_epoch, self._member, list(by_topic.items()))

    def handle_response(self, resp: Any) -> float | None:
        for _, partitions, _ in resp.topics:
            for _, code, _ in partitions:
                if code in STALE_MEMBER_CODES:
                    self._sender._txn_manager.error_transaction(StaleGroupMember(
                        f"{STALE_MEMBER_CODES[code]}: generation {self._member.generation} of group {self._group_id} is over"))
                    return None
        return super().handle_response(_V0Shaped(resp))


class FencedOffsets:
    """Installed on one transactional producer: its transactions' offset commits name the member."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._member: GroupMember | None = None
        sender = producer._sender
        sender._do_txn_offset_commit = self._txn_offset_commit  # this producer's sender only

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group_id: str, member: GroupMember) -> None:
        """`send_offsets_to_transaction`, checked by the group coordinator against `member`."""
        if member.generation < 0 or not member.member_id:
            raise StaleGroupMember(f"the batch was read outside any generation of group {group_id}")
        self._member = member
        try:
            await self.producer.send_offsets_to_transaction(offsets, group_id)
        finally:
            self._member = None

    async def _txn_offset_commit(self, offsets: Mapping[TopicPartition, Any], group_id: str) -> None:
        """aiokafka's Sender._do_txn_offset_commit, sending version 3 with the member."""
        if not offsets:
            return
        sender = self.producer._sender
        try:
            node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
        except Errors.GroupAuthorizationFailedError as exc:
            sender._txn_manager.error_transaction(exc)
            return
        assert self._member is not None, "offsets are only sent through send_offsets"
        await _FencedHandler(sender, offsets, group_id, self._member).do(node_id)


def member_of(consumer: Any) -> GroupMember:
    """The consumer's current generation and member id (aiokafka keeps them on its coordinator)."""
    coordinator = consumer._coordinator
    return GroupMember(coordinator.generation, coordinator.member_id)
