"""The quarantine: records a stage could neither process nor dead-letter (the dead-letter send
was refused), kept in Postgres with their coordinates so the stage can go on. One implementation
for the pricer and the ledger; the tables are in tally_dlq (migration 0006)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from shared.events import DeadLetter
from shared.migrations import _LOCK_ID as MIGRATION_LOCK
from shared.migrations import MIGRATIONS_DIR
from shared.record_limits import bounded_reason

log = structlog.get_logger(__name__)

QUARANTINE_MIGRATION = MIGRATIONS_DIR / "0006_dead_letter_quarantine.sql"


@dataclass(frozen=True)
class Quarantined:
    id: int
    stage: str
    letter: DeadLetter
    quarantined_at: datetime


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")  # Postgres text refuses NUL: the one thing an excerpt may hold


class QuarantineStore:
    def __init__(self, pool: AsyncConnectionPool, stage: str, *, create_tables_in: str | None = None) -> None:
        self.pool = pool
        self.stage = stage
        # The pricer applies no migrations: the store creates its tables on first use.
        self._create_tables_in = create_tables_in

    async def put(self, letters: Sequence[DeadLetter], cause: str) -> None:
        """Keep `letters` (whose send failed with `cause`); a record already kept stays as it was."""
        if self._create_tables_in is not None:
            await ensure_quarantine_tables(self._create_tables_in)
            self._create_tables_in = None
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO tally_dlq.quarantine (stage, source_topic, source_partition, source_offset, reason,"
                " request_id, payload_bytes, payload_sha256, excerpt) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING",
                [(self.stage, l.source_topic, l.partition, l.offset,
                  _text(bounded_reason(f"{l.reason}; the dead letter could not be sent: {cause}")),
                  l.request_id, l.payload_bytes, l.payload_sha256, _text(l.excerpt)) for l in letters],
            )
            await conn.commit()
        for l in letters:
            log.error("record_quarantined", stage=self.stage, topic=l.source_topic, partition=l.partition,
                      offset=l.offset, reason=l.reason, cause=cause)

    async def all(self, source_topics: Sequence[str]) -> list[Quarantined]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, stage, source_topic, source_partition, source_offset, reason, request_id, payload_bytes,"
                " payload_sha256, excerpt, quarantined_at FROM tally_dlq.quarantine WHERE source_topic = ANY(%s) ORDER BY id",
                (list(source_topics),))
            rows = await cur.fetchall()
            await conn.rollback()
        return [Quarantined(r[0], r[1], DeadLetter(source_topic=r[2], partition=r[3], offset=r[4], reason=r[5],
                                                   request_id=r[6], payload_bytes=r[7], payload_sha256=r[8],
                                                   excerpt=r[9], failed_at=r[10]), r[10]) for r in rows]


async def ensure_quarantine_tables(database_url: str) -> None:
    """Create the quarantine tables if missing (the pricer, which applies no other migration),
    under the migrations' lock so it never races the ledger's migrations."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await conn.execute(Path(QUARANTINE_MIGRATION).read_text())  # type: ignore[arg-type]
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
