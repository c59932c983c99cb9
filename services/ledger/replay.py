"""Rebuild every ledger table from offset 0 of the topics into a fresh schema, check it, and swap
it in atomically (or, with --verify, compare it with the live tables and change nothing).

Swap safety: every live ledger batch holds a shared advisory lock (SWAP_LOCK) for its whole
transaction; the swap holds it exclusively while it renames the schemas, so it waits for the
batch in flight and the live ledger waits for the swap. The live ledger notices the new schema on
its next batch (its schema's oid changed), drops what it had read and seeks to the offsets stored
in the new schema, so nothing is skipped or counted twice."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import date, datetime, timezone

import psycopg
from aiokafka import TopicPartition
from psycopg import sql
from tqdm import tqdm

from services.ledger.checks import Difference, check_schema, compare_schemas
from services.ledger.consumer import Ledger, discover_partitions, topics_for
from services.ledger.kafka_guards import position
from services.ledger.metrics import LedgerMetrics
from services.ledger.retention import drop_before
from services.ledger.settings import LedgerSettings
from services.ledger.store import SWAP_LOCK, LedgerStore, make_pool
from shared import kafka
from shared.metrics import Registry
from shared.migrations import migrate


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")


class Rebuild:
    """A fresh schema filled from the topics by the ledger's own batch code (no totals or dead
    letters are published: the live ledger already did)."""

    def __init__(self, settings: LedgerSettings, schema: str, *, progress: bool) -> None:
        self.settings = settings
        self.schema = schema
        self.progress = progress

    async def __aenter__(self) -> Rebuild:
        async with await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
        await migrate(self.settings.database_url, schema=self.schema)
        self.pool = make_pool(self.settings.database_url, self.schema, 2)
        await self.pool.open()
        topics, priced, _, _ = topics_for(self.settings.topic)
        self.consumer = kafka.consumer(self.settings, group_id=None, max_poll_records=self.settings.replay_batch_max_events)
        await self.consumer.start()
        self.ledger = Ledger(
            consumer=self.consumer, producer=None,
            store=LedgerStore(self.pool, self.settings.consumer_name, store_bodies=self.settings.store_bodies, take_swap_lock=False),
            metrics=LedgerMetrics(Registry()), topics=topics, priced_topic=priced, dlq_topic=None, totals_topic=None,
            batch_max_events=self.settings.replay_batch_max_events, batch_max_ms=500,
            store_bodies=self.settings.store_bodies, retry_max_delay_s=self.settings.retry_max_delay_s,
        )
        self.partitions = await discover_partitions(self.settings.kafka_bootstrap_servers, topics)
        await self.ledger.assign(self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await kafka.stop_clients(self.consumer)
        await self.pool.close()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return await self.consumer.end_offsets(self.partitions)

    async def run_until(self, targets: Mapping[TopicPartition, int]) -> int:
        """Consume until every partition's position reaches its target; returns events read."""
        begin = await self.consumer.beginning_offsets(self.partitions)
        positions = {tp: await position(self.consumer, tp) for tp in self.partitions}
        total = sum(max(0, targets.get(tp, 0) - max(positions[tp], begin[tp])) for tp in self.partitions)
        done = 0
        with tqdm(total=total, unit="ev", unit_scale=True, disable=not self.progress, desc="replay", file=sys.stderr) as bar:

            async def reached() -> bool:
                for tp in self.partitions:
                    if await position(self.consumer, tp) < targets.get(tp, 0):
                        return False
                return True

            def advance(count: int) -> None:
                nonlocal done
                done += count
                bar.update(count)

            self.ledger.limits = dict(targets)  # never read past a target
            await self.ledger.pump(done=reached, progress=advance, idle_timeout_ms=500)
        return done


async def _live_offsets(conn: psycopg.AsyncConnection, schema: str, consumer_name: str) -> dict[tuple[str, int], int]:
    cur = await conn.execute(
        sql.SQL("SELECT topic, partition, next_offset FROM {}.tally_consumer_offsets WHERE consumer_group = %s").format(sql.Identifier(schema)),
        (consumer_name,),
    )
    return {(t, p): o for t, p, o in await cur.fetchall()}


async def _live_horizon(conn: psycopg.AsyncConnection, schema: str) -> date | None:
    """The live schema's retention horizon: the rebuild keeps no logs before it either."""
    cur = await conn.execute(sql.SQL("SELECT horizon FROM {}.tally_spend_log_retention").format(sql.Identifier(schema)))
    row = await cur.fetchone()
    return row[0] if row else None


def _print_differences(differences: list[Difference]) -> None:
    for d in differences:
        print(d)


async def replay_command(settings: LedgerSettings, *, verify: bool, keep_backup: bool = True, progress: bool = True) -> int:
    live = settings.db_schema
    rebuilt = f"tally_rebuild_{_stamp()}"
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as lock_conn:
        async with Rebuild(settings, rebuilt, progress=progress) as rebuild:
            if verify:
                # Rebuild up to where the live ledger is, then, with the live ledger paused, catch
                # up to where it stopped and compare.
                stored = await _live_offsets(lock_conn, live, settings.consumer_name)
                await rebuild.run_until({tp: stored.get((tp.topic, tp.partition), 0) for tp in rebuild.partitions})
                await lock_conn.execute("SELECT pg_advisory_lock(%s)", (SWAP_LOCK,))
                try:
                    stored = await _live_offsets(lock_conn, live, settings.consumer_name)
                    await rebuild.run_until({tp: stored.get((tp.topic, tp.partition), 0) for tp in rebuild.partitions})
                    horizon = await _live_horizon(lock_conn, live)
                    differences = await compare_schemas(
                        lock_conn, live, rebuilt,
                        None if horizon is None else datetime(horizon.year, horizon.month, horizon.day, tzinfo=timezone.utc))
                finally:
                    await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (SWAP_LOCK,))
                await lock_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(rebuilt)))
                _print_differences(differences)
                print(f"replay --verify: {len(differences)} difference(s) between {live} and a rebuild from the topics")
                return 1 if differences else 0
            events = await rebuild.run_until(await rebuild.end_offsets())
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=False,
                                                         options=f"-c search_path={rebuilt}") as check_conn:
            problems = await check_schema(check_conn)
            horizon = await _live_horizon(check_conn, live)
            if not problems and horizon is not None:
                # Checked with every day the topics hold; then the days the live tables had
                # dropped go again, so a replay does not bring dropped logs back.
                await drop_before(check_conn, horizon)
        if problems:
            _print_differences(problems)
            print(f"replay: the rebuild in schema {rebuilt} failed its checks ({len(problems)}); the live tables are untouched")
            return 1
        backup = f"tally_backup_{_stamp()}"
        async with lock_conn.transaction():
            await lock_conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWAP_LOCK,))
            await lock_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(backup)))
            await lock_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(rebuilt), sql.Identifier(live)))
        if not keep_backup:
            await lock_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(backup)))
        print(f"replay: {events} events rebuilt into {live}" + (f"; the previous tables are in schema {backup}" if keep_backup else ""))
        return 0
