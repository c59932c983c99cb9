"""Admin changes this process applied before the entities topic brought them back.

The replica that makes a change applies it at once (admin/publisher.py), while its topic follower
may still be reading older changes of the same entity; applied as they come, those would put the
entity back to an older state for a moment, and a route reading it then (a member added, a key
renamed) would publish that older state: a lost update. The topic has one partition, so every
change the follower reads for such an entity before it reaches this process's own change is older
than it: those are skipped. Plain code, no I/O."""

from __future__ import annotations

from shared.events import EntityChanged


class AheadOfLog:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], str] = {}  # (kind, id) -> the latest event_id applied here

    def applied_here(self, change: EntityChanged) -> None:
        self._pending[(change.entity_type, change.entity_id)] = change.event_id

    def is_stale(self, change: EntityChanged) -> bool:
        """True for a change read from the topic that is older than one applied here."""
        entity = (change.entity_type, change.entity_id)
        pending = self._pending.get(entity)
        if pending is None:
            return False
        if pending == change.event_id:
            del self._pending[entity]  # the follower has caught up with this process's change
        return pending != change.event_id
