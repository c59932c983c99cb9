"""Pricer throughput against the real broker: N usage events produced up front, then the time
for the pricer process(es) to price them all (their committed offsets reach the end).

    python bench/bench_pricer.py [--events 100000] [--instances 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.events import TokenUsage, UsageEvent, encode  # noqa: E402
from shared.kafka import ensure_topics, idempotent_producer  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from shared.topics import USAGE  # noqa: E402
from stack.kafka import NAME as KAFKA_NAME, ensure_kafka  # noqa: E402
from stack.procs import recorded_pid  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402

MODELS = ["openai/gpt-4o-mini", "groq/llama3-8b-8192", "anthropic/claude-3-5-sonnet-20240620", "gpt-4o", "azure/gpt-4-1106-preview"]


def events(count: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(timezone.utc)
    out = []
    for i in range(count):
        key = f"{i % 1000:064x}"
        event = UsageEvent(request_id=str(uuid.uuid4()), call_type="acompletion", start_time=now, end_time=now,
                           api_key_hash=key, model_group="m", model=MODELS[i % len(MODELS)], team_id=f"team-{i % 50}",
                           end_user=f"customer-{i % 500}", request_tags=[f"tag-{i % 100}"],
                           usage=TokenUsage(prompt_tokens=20 + i % 500, completion_tokens=80 + i % 300))
        out.append((key.encode(), encode(event)))
    return out


async def produce(settings: CommonSettings, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = idempotent_producer(settings, linger_ms=20)
    await producer.start()
    try:
        batch = []
        for key, value in payloads:
            batch.append(await producer.send(settings.topic(USAGE), value, key=key))
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def committed_total(settings: CommonSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic(USAGE) and meta.offset > 0)
    finally:
        await admin.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(bootstrap: str, count: int, instances: int, broker: int | None) -> dict:
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    await ensure_topics(settings)
    try:
        return await measure(settings, count, instances, broker)
    finally:
        # Every run makes its own topics; a broker left holding them all runs out of file descriptors.
        await delete_prefixed(settings.kafka_bootstrap_servers, settings.topic_prefix)


async def measure(settings: CommonSettings, count: int, instances: int, broker: int | None) -> dict:
    payloads = events(count)
    began = time.perf_counter()
    await produce(settings, payloads)
    print(f"produced {count} usage events in {time.perf_counter() - began:.1f}s", flush=True)
    group = f"{settings.topic_prefix}tally-pricer"
    procs = []
    started = time.perf_counter()
    for i in range(instances):
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "TALLY_TOPIC_PREFIX": settings.topic_prefix,
               "PRICER_PORT": str(14002 + i), "PRICER_INSTANCE": f"bench-{i}", "TALLY_LOG_LEVEL": "warning"}
        procs.append(subprocess.Popen([sys.executable, "-m", "services.pricer"], cwd=ROOT, env=env))
    try:
        deadline = time.monotonic() + 600
        first_progress = None
        done = 0
        while done < count and time.monotonic() < deadline:
            await asyncio.sleep(0.25)  # sampling interval of the progress poll
            done = await committed_total(settings, group)
            if done and first_progress is None:
                first_progress = (time.perf_counter(), done)
                cpu_at_first = sum(cpu_seconds(p.pid) for p in procs)
                broker_cpu_at_first = cpu_seconds(broker) if broker else 0.0
        finished = time.perf_counter()
        cpu_at_end = sum(cpu_seconds(p.pid) for p in procs)
        broker_cpu_at_end = cpu_seconds(broker) if broker else 0.0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    t0, n0 = first_progress or (started, 0)
    steady = (done - n0) / (finished - t0) if finished > t0 else 0.0
    # CPU per event of the pricer process(es) in the same window: on a shared machine this moves
    # far less than the rate does, so before/after comparisons rest on it.
    cpu = cpu_at_end - cpu_at_first if first_progress else 0.0
    broker_cpu = broker_cpu_at_end - broker_cpu_at_first if first_progress and broker else None
    result = {
        "events": count, "instances": instances, "priced": done,
        "seconds_including_startup": round(finished - started, 2),
        "events_per_s_sustained": round(steady),
        "target_events_per_s": 20000,
        "pricer_cpu_us_per_event": round(cpu / (done - n0) * 1e6, 1) if done > n0 else None,
        "pricer_cpu_share_of_wall": round(cpu / (finished - t0), 2) if finished > t0 else None,
        # The broker serves the other benchmarks on the machine too: an upper bound.
        "broker_cpu_us_per_event": round(broker_cpu / (done - n0) * 1e6, 1) if broker_cpu is not None and done > n0 else None,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--broker-pid", type=int, help="the broker's process, for its CPU time (default: the stack's)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ensure_kafka()
    result = asyncio.run(main(bootstrap, args.events, args.instances, args.broker_pid or recorded_pid(KAFKA_NAME)))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "pricer.json").write_text(json.dumps(result, indent=2) + "\n")
