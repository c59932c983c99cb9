"""Ledger figures on this machine (Kafka and Postgres on it too), printed and written to
bench/results/ledger.json:

- ingest: events/s committed from a backlog of priced events (rows, rollups, totals, offsets);
- freshness: at a steady 1,000 events/s from a separate producer process, the delay from each
  event's end_time to the commit of its row (p50, p99, max);
- replay: events/s rebuilt into a fresh schema (the `replay` command's rebuild phase);
- size: table + index bytes per spend log row, bodies off;
- CPU per event of ingest and replay: the ledger's Python and its Postgres backends (steadier
  than events/s on a shared machine).

    python bench/bench_ledger.py [--events 100000] [--rate 1000] [--seconds 20] [--lease-holders N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from services.ledger.consumer import Ledger, topics_for  # noqa: E402
from services.ledger.metrics import LedgerMetrics  # noqa: E402
from services.ledger.replay import Rebuild  # noqa: E402
from services.ledger.settings import LedgerSettings  # noqa: E402
from services.ledger.store import BatchResult, LedgerStore, make_pool  # noqa: E402
from shared import kafka  # noqa: E402
from shared.events import CostBreakdown, PricedUsageEvent, TokenUsage, UsageEvent, encode  # noqa: E402
from shared.metrics import Registry  # noqa: E402
from shared.migrations import migrate  # noqa: E402
from shared.topics import PRICED  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ledger.json"
# --lease-holders N: every event names one of N budget lease holders, as calls a budget lease admitted
# do (the ledger then also counts each holder's spend); through the environment, so the steady
# producer process makes the same events.
LEASE_HOLDERS = int(os.environ.get("BENCH_LEASE_HOLDERS", "0"))
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://tally:tally@127.0.0.1:5432/tally")
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def event(i: int, at: datetime) -> PricedUsageEvent:
    """A realistic chat call: 200 keys, 20 teams, 50 users, 100 customers, 10 tags."""
    usage = UsageEvent(
        request_id=str(uuid.uuid4()), call_type="acompletion", start_time=at - timedelta(milliseconds=800), end_time=at,
        api_key_hash=hashlib.sha256(f"sk-{i % 200}".encode()).hexdigest(), key_alias=f"key-{i % 200}",
        user_id=f"user-{i % 50}", team_id=f"team-{i % 20}", end_user=f"customer-{i % 100}", model_group="gpt-4o-mini",
        model="openai/gpt-4o-mini", model_id="deployment-1", custom_llm_provider="openai", api_base="https://api.openai.com/v1",
        usage=TokenUsage(prompt_tokens=20 + i % 500, completion_tokens=80 + i % 300), request_tags=[f"team-tag-{i % 10}"],
        quoted_cost=Decimal("0.000051"), requester_ip_address="10.0.0.7",
        metadata={"user_api_key_team_alias": f"team-alias-{i % 20}"},  # as the proxy adds it
        lease_holder=f"bench-host:4000/{i % LEASE_HOLDERS}/0123456789ab" if LEASE_HOLDERS else None,
    )
    return PricedUsageEvent(usage_event=usage, cost=CostBreakdown(input=Decimal("0.000003"), output=Decimal("0.000048"),
                                                                  total=Decimal("0.000051")),
                            priced_model="gpt-4o-mini", catalog_version="bench")


async def produce_backlog(settings: LedgerSettings, count: int) -> None:
    producer = kafka.idempotent_producer(settings, linger_ms=20)
    await producer.start()
    try:
        now = datetime.now(timezone.utc)
        futures = []
        for i in range(count):
            e = event(i, now)
            futures.append(await producer.send(settings.topic(PRICED), encode(e), key=e.usage_event.api_key_hash.encode()))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_steady(prefix: str, rate: int, seconds: float) -> None:
    """Runs in its own process: exactly rate × seconds events at `rate` per second, each stamped
    with end_time = the moment it is built. Should the producer fall behind (a loaded machine),
    it catches up rather than stopping short, so the ledger always gets the whole count."""
    settings = LedgerSettings(kafka_bootstrap_servers=BOOTSTRAP, topic_prefix=prefix)
    producer = kafka.idempotent_producer(settings, linger_ms=2)
    await producer.start()
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time()
    sent = 0
    try:
        while sent < total:
            due = min(total, int((loop.time() - start) * rate))
            while sent < due:
                e = event(sent, datetime.now(timezone.utc))
                await producer.send(settings.topic(PRICED), encode(e), key=e.usage_event.api_key_hash.encode())
                sent += 1
            await asyncio.sleep(0.005)  # pacing the producer to its rate
        await producer.flush()
    finally:
        await producer.stop()


class Run:
    """A ledger in this process, recording when each row was committed."""

    def __init__(self, settings: LedgerSettings) -> None:
        self.settings = settings
        self.delays: list[float] = []
        self.rows = 0

    def on_commit(self, result: BatchResult, committed_at: float) -> None:
        self.rows += len(result.inserted)

    async def __aenter__(self) -> Run:
        topics, priced, dlq, totals = topics_for(self.settings.topic)
        self.pool = make_pool(self.settings.database_url, "public", 4)
        await self.pool.open()
        self.producer = kafka.idempotent_producer(self.settings)
        self.consumer = kafka.consumer(self.settings, group_id=None, max_poll_records=self.settings.batch_max_events)
        await self.producer.start()
        await self.consumer.start()
        self.ledger = Ledger(consumer=self.consumer, producer=self.producer,
                             store=LedgerStore(self.pool, self.settings.consumer_name, store_bodies=False),
                             metrics=LedgerMetrics(Registry()), topics=topics, priced_topic=priced, dlq_topic=dlq,
                             totals_topic=totals, batch_max_events=self.settings.batch_max_events,
                             batch_max_ms=self.settings.batch_max_ms, store_bodies=False, retry_max_delay_s=1.0,
                             on_commit=self.on_commit)
        self.task = asyncio.create_task(self.ledger.run(self.settings.kafka_bootstrap_servers))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()
        await self.pool.close()

    async def until_rows(self, rows: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.rows < rows:
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.rows} of {rows} rows after {timeout}s")
            await asyncio.sleep(0.01)  # polling the commit counter


class CpuUse:
    """CPU time per event of a phase: this process (the ledger's Python) and, when Postgres runs
    on this machine, its backends serving the bench database (from /proc, sampled because pool
    connections come and go). On a shared machine these move far less than events/s do."""

    def __init__(self, database_url: str) -> None:
        self.dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        self.seen: dict[int, float] = {}
        self.before: dict[int, float] = {}

    def _backends(self) -> dict[int, float]:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        pids = [r[0] for r in self.conn.execute(query, (self.dbname,))]
        used: dict[int, float] = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended, or Postgres is not on this machine
            used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    async def __aenter__(self) -> CpuUse:
        self.conn = psycopg.connect(ADMIN_URL, autocommit=True)
        self.before = self._backends()
        self.process = time.process_time()
        self.sampler = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.seen.update(self._backends())
            await asyncio.sleep(0.25)  # sampling interval

    async def __aexit__(self, *exc: object) -> None:
        self.sampler.cancel()
        await asyncio.gather(self.sampler, return_exceptions=True)
        self.seen.update(self._backends())
        self.conn.close()
        self.process = time.process_time() - self.process
        self.postgres = sum(v - self.before.get(pid, 0.0) for pid, v in self.seen.items())

    def per_event(self, events: int) -> dict[str, float]:
        return {"ledger_python_us": round(self.process / events * 1e6), "postgres_us": round(self.postgres / events * 1e6)}


async def fresh(prefix: str) -> LedgerSettings:
    name = f"tally_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = name
    settings = LedgerSettings(kafka_bootstrap_servers=BOOTSTRAP, database_url=psycopg.conninfo.make_conninfo(**info),
                              topic_prefix=prefix)
    await migrate(settings.database_url)
    await kafka.ensure_topics(settings)
    return settings


async def drop(settings: LedgerSettings) -> None:
    """The run's database and topics go when it is done."""
    name = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await delete_prefixed(settings.kafka_bootstrap_servers, settings.topic_prefix)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(events: int, rate: int, seconds: float) -> dict:
    # The machine is shared: the load average says how much of it the figures had.
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}, "events": events}

    # 1. Ingest from a backlog.
    settings = await fresh(f"bench{uuid.uuid4().hex[:6]}.")
    try:
        print(f"producing a backlog of {events} priced events ...", flush=True)
        await produce_backlog(settings, events)
        async with CpuUse(settings.database_url) as cpu, Run(settings) as run:
            started = time.monotonic()
            await run.until_rows(events, timeout=600)
            elapsed = time.monotonic() - started
        results["ingest_events_per_s"] = round(events / elapsed)
        results["ingest_cpu_per_event"] = cpu.per_event(events)
        print(f"ingest: {events} events in {elapsed:.1f}s = {events / elapsed:,.0f} events/s;"
              f" CPU per event: {cpu.per_event(events)}", flush=True)

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
            # Partitioned tables hold no bytes themselves: their partitions' are summed.
            table, total, days = conn.execute(
                """SELECT sum(pg_relation_size(relid)), sum(pg_total_relation_size(relid)),
                          (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('tally_request_days'))
                   FROM pg_partition_tree('"LiteLLM_SpendLogs"')""").fetchone()
        results["spend_log_bytes_per_row"] = {"table": round(table / events), "table_and_indexes": round(total / events),
                                              "request_days": round(days / events),
                                              "with_request_days": round((total + days) / events)}
        print(f"size: {total / events:,.0f} bytes per spend log row with indexes ({table / events:,.0f} table only),"
              f" {(total + days) / events:,.0f} with its request-days entry", flush=True)

        # 2. Replay's rebuild phase, from the same topics.
        async with CpuUse(settings.database_url) as cpu, Rebuild(settings, "tally_bench_rebuild", progress=False) as rebuild:
            started = time.monotonic()
            replayed = await rebuild.run_until(await rebuild.end_offsets())
            elapsed = time.monotonic() - started
        results["replay_events_per_s"] = round(replayed / elapsed)
        results["replay_cpu_per_event"] = cpu.per_event(replayed)
        print(f"replay: {replayed} events in {elapsed:.1f}s = {replayed / elapsed:,.0f} events/s;"
              f" CPU per event: {cpu.per_event(replayed)}", flush=True)
    finally:
        await drop(settings)

    # 3. Freshness at a steady rate, producer in its own process.
    settings = await fresh(f"bench{uuid.uuid4().hex[:6]}.")
    try:
        async with Run(settings) as run:
            delays: list[float] = []

            def on_commit(result: BatchResult, committed_at: float) -> None:
                run.rows += len(result.inserted)
                for e in result.inserted:  # from the event's end_time (when the call finished) to the commit
                    delays.append(committed_at - e.end_time.timestamp())

            run.ledger.on_commit = on_commit
            producer = subprocess.Popen([sys.executable, __file__, "--produce", settings.topic_prefix, str(rate), str(seconds)])
            await asyncio.get_running_loop().run_in_executor(None, producer.wait)
            await run.until_rows(int(rate * seconds), timeout=120)
        results["freshness"] = {
            "rate_per_s": rate, "seconds": seconds, "rows": len(delays),
            "p50_s": round(pct(delays, 0.50), 3), "p99_s": round(pct(delays, 0.99), 3), "max_s": round(max(delays), 3),
        }
        print(f"freshness at {rate}/s: p50 {pct(delays, 0.5) * 1000:.0f} ms, p99 {pct(delays, 0.99) * 1000:.0f} ms,"
              f" max {max(delays) * 1000:.0f} ms over {len(delays)} rows", flush=True)
    finally:
        await drop(settings)
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    return results


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        asyncio.run(produce_steady(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--lease-holders", type=int, default=0)
    args = parser.parse_args()
    if args.lease_holders:
        global LEASE_HOLDERS
        LEASE_HOLDERS = args.lease_holders
        os.environ["BENCH_LEASE_HOLDERS"] = str(args.lease_holders)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(bench(args.events, args.rate, args.seconds))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
