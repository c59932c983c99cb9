"""What the ledger makes of the messages it reads, pure: each message decoded and checked into an
`Item` (a priced event's spend log row, an admin event, or why it cannot be used), items gathered
into a `Batch` for one transaction, and a running total as the event published on totals.v1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from pydantic import ValidationError

from services.ledger.errors import Unstorable
from services.ledger.fast_priced import FastPricedEvent, decode_priced
from services.ledger.rollup import EntityState
from services.ledger.rows import SpendLogLine, spend_log_line
from shared.events import EntityChanged, EntityTotal, PricedUsageEvent, SpendReset, UnknownEventVersion, decode

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Item(NamedTuple):
    """One message read: a priced event's spend log row, an admin event, or why it cannot be used.
    (A NamedTuple: one is made per message, and a frozen dataclass costs several times as much.)"""

    topic: str
    partition: int
    offset: int
    raw: bytes
    event: EntityChanged | SpendReset | None
    reason: str | None = None
    log: SpendLogLine | None = None  # a priced event's spend log row, ready for COPY


@dataclass
class Batch:
    """Decoded events in the order they were read, and where each partition's reading ends."""

    priced: list[SpendLogLine] = field(default_factory=list)
    admin: list[EntityChanged | SpendReset] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def read_item(topic: str, partition: int, offset: int, raw: bytes | None, *, priced_topic: str, store_bodies: bool) -> Item:
    """Decode and check one message."""
    if raw is None:
        return Item(topic, partition, offset, b"", None, "empty message")
    try:
        event = decode_priced(raw) if topic == priced_topic else None
        if event is None:
            event = decode(raw)  # any type, older versions upcast, and the precise error
    except (ValueError, ValidationError, UnknownEventVersion) as exc:
        return Item(topic, partition, offset, raw, None, f"not a valid event: {str(exc)[:500]}")
    wanted = (FastPricedEvent, PricedUsageEvent) if topic == priced_topic else (EntityChanged, SpendReset)
    if not isinstance(event, wanted):
        return Item(topic, partition, offset, raw, None, f"a {event.type} event does not belong on {topic}")
    if not isinstance(event, (FastPricedEvent, PricedUsageEvent)):
        return Item(topic, partition, offset, raw, event)
    try:
        log = spend_log_line(event, store_bodies, raw)  # built once, when read; copied at commit
    except Unstorable as exc:
        return Item(topic, partition, offset, raw, None, str(exc))
    return Item(topic, partition, offset, raw, None, log=log)


def make_batch(items: Sequence[Item]) -> Batch:
    batch = Batch()
    for item in items:
        if item.log is not None:
            batch.priced.append(item.log)
        elif item.event is not None:
            batch.admin.append(item.event)
        key = (item.topic, item.partition)
        batch.next_offsets[key] = max(batch.next_offsets.get(key, 0), item.offset + 1)
    return batch


def blamed(item: Item, exc: BaseException) -> Item:
    """The item as refused by the database (a dead letter), unless it already has a reason."""
    if item.reason is not None:
        return item
    return Item(item.topic, item.partition, item.offset, item.raw, None, f"refused by the database: {type(exc).__name__}: {str(exc)[:500]}")


def total_event(state: EntityState) -> EntityTotal:
    as_of = max((t for t in (state.as_of, state.window_start) if t is not None), default=EPOCH)
    return EntityTotal(entity_type=state.entity_type, entity_id=state.entity_id, spend=state.spend,  # type: ignore[arg-type]
                       window_start=state.window_start, budget_reset_at=state.budget_reset_at, as_of=as_of)
