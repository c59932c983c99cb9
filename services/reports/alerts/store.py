"""The alerts' Postgres adapter: the follower's offsets and its decisions in one transaction (so a
restart resumes where the decisions stop, and a replay or a second instance meets the unique key
and records nothing twice); the outbox the delivery worker claims, marks and dead-letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class Decision:
    alert_key: str
    channel: str
    entity_type: str
    entity_id: str
    event: str
    body: bytes


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    alert_key: str
    channel: str
    event: str
    status: str
    attempts: int
    last_error: str | None
    decided_at: datetime
    sent_at: datetime | None


class AlertStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def offsets(self, topic: str) -> dict[int, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT partition, next_offset FROM tally_alerts.offsets WHERE topic = %s", (topic,))
            return {partition: offset for partition, offset in await cur.fetchall()}

    async def record(self, decisions: list[Decision], offsets: dict[tuple[str, int], int]) -> int:
        """Decisions and the offsets past the messages that made them, together; returns how many
        decisions were new. Offsets only move forward (another instance may be ahead)."""
        async with self.pool.connection() as conn, conn.transaction():
            new = 0
            async with conn.cursor() as cur:
                for d in decisions:
                    await cur.execute(
                        "INSERT INTO tally_alerts.deliveries (alert_key, channel, entity_type, entity_id, event, body)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (alert_key, channel) DO NOTHING",
                        (d.alert_key, d.channel, d.entity_type, d.entity_id, d.event, d.body.decode()))
                    new += cur.rowcount
                if offsets:
                    await cur.executemany(
                        "INSERT INTO tally_alerts.offsets (topic, partition, next_offset) VALUES (%s, %s, %s)"
                        " ON CONFLICT (topic, partition) DO UPDATE SET next_offset ="
                        " GREATEST(tally_alerts.offsets.next_offset, EXCLUDED.next_offset)",
                        [(topic, partition, offset) for (topic, partition), offset in offsets.items()])
            return new

    async def decided(self, alert_key: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM tally_alerts.deliveries WHERE alert_key = %s LIMIT 1", (alert_key,))
            return await cur.fetchone() is not None

    async def claim(self, limit: int, lease_s: float) -> list[Delivery]:
        """Pending deliveries that are due, leased for `lease_s` (another instance skips them; a
        worker that dies mid-send leaves them due again when the lease ends), oldest first."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE tally_alerts.deliveries SET next_attempt_at = now() + make_interval(secs => %s)"
                " WHERE id IN (SELECT id FROM tally_alerts.deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
                "  ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, channel, body, attempts", (lease_s, limit))
            rows = await cur.fetchall()
        return sorted((Delivery(i, channel, body.encode(), attempts) for i, channel, body, attempts in rows), key=lambda d: d.id)

    async def sent(self, delivery_id: int) -> None:
        await self._update("status = 'sent', attempts = attempts + 1, sent_at = now(), last_error = NULL", delivery_id)

    async def retry_later(self, delivery_id: int, error: str, delay_s: float) -> None:
        await self._update("attempts = attempts + 1, last_error = %s, next_attempt_at = now() + make_interval(secs => %s)",
                           delivery_id, error[:1000], delay_s)

    async def dead(self, delivery_id: int, error: str) -> None:
        await self._update("status = 'dead', attempts = attempts + 1, last_error = %s", delivery_id, error[:1000])

    async def _update(self, assignments: str, delivery_id: int, *params: Any) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(f"UPDATE tally_alerts.deliveries SET {assignments} WHERE id = %s", (*params, delivery_id))  # type: ignore[arg-type]

    async def counts(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM tally_alerts.deliveries GROUP BY status")
            found = {status: n for status, n in await cur.fetchall()}
        return {status: found.get(status, 0) for status in ("pending", "sent", "dead")}

    async def listing(self, status: str | None = None, limit: int = 1000) -> list[DeliveryRow]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, alert_key, channel, event, status, attempts, last_error, decided_at, sent_at"
                " FROM tally_alerts.deliveries WHERE %(status)s::text IS NULL OR status = %(status)s ORDER BY id LIMIT %(limit)s",
                {"status": status, "limit": limit})
            return [DeliveryRow(*row) for row in await cur.fetchall()]

    async def resend(self, ids: list[int] | None) -> int:
        """Dead deliveries (these ids, or all) pending again with fresh attempts; returns how many."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE tally_alerts.deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()"
                " WHERE status = 'dead' AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))", {"ids": ids})
            return cur.rowcount
