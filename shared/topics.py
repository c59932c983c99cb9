"""The topics of the log, with their partitions and retention (see ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

USAGE = "usage.v1"
PRICED = "priced.v1"
USAGE_DLQ = "usage.dlq.v1"
PRICED_DLQ = "priced.dlq.v1"
ENTITIES = "entities.v1"
TOTALS = "totals.v1"
CATALOG = "catalog.v1"

UNLIMITED = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(partitions: int = 6) -> list[TopicSpec]:
    return [
        TopicSpec(USAGE, partitions, UNLIMITED),
        TopicSpec(PRICED, partitions, UNLIMITED),
        TopicSpec(USAGE_DLQ, 1, UNLIMITED),
        TopicSpec(PRICED_DLQ, 1, UNLIMITED),
        # One partition: entity changes and spend resets keep one global order, which a replay
        # reproduces exactly; admin traffic is tiny.
        TopicSpec(ENTITIES, 1, UNLIMITED),
        TopicSpec(TOTALS, partitions, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        # One partition, kept for ever: the newest published price catalog is the current one, and
        # every older version stays readable by its id, so a replay prices as the original did.
        TopicSpec(CATALOG, 1, UNLIMITED),
    ]
