"""Scratch topics: every test and benchmark run makes topics under a random prefix of its own, and
a long-lived local broker would keep them all (thousands of partitions: slow start-ups, gigabytes
of disk). These delete them. Only the scratch prefixes below match; unprefixed topics and any
prefix a deployment would choose are never touched.

    python -m stack.prune     # delete every scratch topic (run it when no test or benchmark runs)"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient

# tests: t/e/f + 10 hex digits (tests/fixtures); benchmarks: bench, bb, be2e + 6 to 8 (bench/).
SCRATCH = re.compile(r"^(?:[tef][0-9a-f]{10}|(?:bench|bb|be2e)[0-9a-f]{6,8})\.")
DELETE_CHUNK = 200  # topics per DeleteTopics request


def scratch(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if SCRATCH.match(name))


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> int:
    """Delete `names` (scratch ones only, whatever else is passed); returns how many."""
    names = scratch(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    await admin.start()
    try:
        for i in range(0, len(names), DELETE_CHUNK):
            await admin.delete_topics(names[i:i + DELETE_CHUNK])
    finally:
        await admin.close()
    return len(names)


async def delete_prefixed(bootstrap: str, prefix: str) -> int:
    """A benchmark's or test's own scratch topics, when it is done with them."""
    return await delete_topics(bootstrap, [name for name in await list_topics(bootstrap) if name.startswith(prefix)])


async def prune_all(bootstrap: str) -> int:
    return await delete_topics(bootstrap, list(await list_topics(bootstrap)))


def main() -> None:
    from stack.kafka import ensure_kafka

    deleted = asyncio.run(prune_all(ensure_kafka()))
    print(f"deleted {deleted} scratch topics", file=sys.stderr)


if __name__ == "__main__":
    main()
