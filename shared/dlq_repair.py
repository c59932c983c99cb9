"""`python -m services.<stage> dlq list|show|replay`: what a stage set aside (dead letters on its
dlq topic, and records quarantined in Postgres when even the dead letter was refused), one of
them in full, and feeding the original records back to where they are processed.

A set-aside record is named by its source coordinates, `topic:partition:offset`. Replay reads the
original record there (the topics keep everything) and produces it again, key and headers as they
were, to the same topic: the stage processes it again, and the request id keeps it exactly once
(the ledger inserts ON CONFLICT DO NOTHING). Each replay is recorded in tally_dlq.replayed in the
same Postgres transaction that covers the send, so a second replay does nothing and says so."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import psycopg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError
from tqdm import tqdm

from shared import kafka
from shared.backoff import Backoff
from shared.db import pool as db_pool
from shared.events import DeadLetter, UnknownEventVersion, decode_as
from shared.quarantine import QuarantineStore, ensure_quarantine_tables
from shared.settings import CommonSettings

T = TypeVar("T")
# Exit statuses: 0 done (a replay already done counts), 1 some record could not be shown or
# replayed, 2 no such set-aside record.
OK, FAILED, UNKNOWN = 0, 1, 2
SHOW_BYTES = 64 * 1024  # how much of the original record `show` prints without --full


@dataclass(frozen=True)
class Stage:
    name: str  # "pricer" | "ledger"
    dlq_topic: str  # prefixed
    source_topics: tuple[str, ...]  # prefixed: the topics the stage reads


@dataclass(frozen=True)
class SetAside:
    letter: DeadLetter
    kind: str  # "dead letter" | "quarantined"
    at: datetime
    replayed_at: datetime | None = None

    @property
    def coordinates(self) -> str:
        return coordinates(self.letter)


def coordinates(letter: DeadLetter) -> str:
    return f"{letter.source_topic}:{letter.partition}:{letter.offset}"


def parse_coordinates(text: str) -> tuple[str, int, int]:
    topic, partition, offset = text.rsplit(":", 2)
    return topic, int(partition), int(offset)


async def set_aside(settings: CommonSettings, stage: Stage) -> list[SetAside]:
    """Every record the stage set aside, oldest first, once each (a batch re-read after a
    failure may have dead-lettered a record twice), with when it was replayed, if it was."""
    letters = []
    for record in await read_all(settings, stage.dlq_topic):
        try:
            letter = decode_as(DeadLetter, record.value)
        except (ValueError, ValidationError, UnknownEventVersion):
            continue  # not a dead letter: nothing to replay from it
        if letter.source_topic in stage.source_topics:
            letters.append(SetAside(letter, "dead letter", letter.failed_at))
    await ensure_quarantine_tables(settings.database_url)
    async with db_pool(settings.database_url, min_size=1, max_size=1) as pool:
        kept = await QuarantineStore(pool, stage.name).all(stage.source_topics)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT source_topic, source_partition, source_offset, replayed_at FROM tally_dlq.replayed")
            replayed = {f"{t}:{p}:{o}": at for t, p, o, at in await cur.fetchall()}
    letters += [SetAside(q.letter, "quarantined", q.quarantined_at) for q in kept]
    found: dict[str, SetAside] = {}
    for item in sorted(letters, key=lambda i: i.at):
        found.setdefault(item.coordinates, SetAside(item.letter, item.kind, item.at, replayed.get(item.coordinates)))
    return list(found.values())


async def read_all(settings: CommonSettings, topic: str) -> list[ConsumerRecord]:
    """Every committed record of `topic` up to its end now."""
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await settled(lambda: consumer.end_offsets(partitions))
        records: list[ConsumerRecord] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records += messages
        return records
    finally:
        await kafka.stop_clients(consumer)


async def settled(ask: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Ask again while the answer is retriable (a leader not yet known to this fresh client's
    metadata: StaleMetadata), with a short backoff."""
    backoff = Backoff(0.2, 0.2 * 2 ** attempts)  # bounded by the attempts, never by the cap
    for attempt in range(attempts):
        try:
            return await ask()
        except KafkaError as exc:
            if not exc.retriable or attempt == attempts - 1:
                raise
        await backoff.sleep()
    raise AssertionError("unreachable")


async def partitions_of(consumer, topic: str) -> list[TopicPartition]:  # noqa: ANN001
    # Waits for the topic's metadata (a fresh client has none); raises if the topic does not exist.
    found = await settled(lambda: consumer._client._wait_on_metadata(topic))  # noqa: SLF001
    return [TopicPartition(topic, p) for p in sorted(found)]


async def read_original(settings: CommonSettings, letter: DeadLetter) -> ConsumerRecord | None:
    """The record at the letter's source coordinates, or None if it is not there (any more)."""
    tp = TopicPartition(letter.source_topic, letter.partition)
    consumer = kafka.consumer(settings, group_id=None, max_partition_fetch_bytes=2 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await settled(lambda: consumer.end_offsets([tp])))[tp]
        if letter.offset >= end:
            return None
        consumer.seek(tp, letter.offset)
        while await consumer.position(tp) <= letter.offset:
            for message in (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp, []):
                return message if message.offset == letter.offset else None
        return None
    finally:
        await kafka.stop_clients(consumer)


async def list_command(settings: CommonSettings, stage: Stage) -> int:
    items = await set_aside(settings, stage)
    if not items:
        print(f"{stage.name}: nothing set aside")
        return OK
    print(f"{'COORDINATES':<40} {'KIND':<12} {'BYTES':>9} {'SET ASIDE AT':<20} {'REPLAYED':<9} REASON")
    for item in items:
        replayed = item.replayed_at.strftime("%Y-%m-%d") if item.replayed_at else "-"
        reason = item.letter.reason.replace("\n", " ")
        print(f"{item.coordinates:<40} {item.kind:<12} {item.letter.payload_bytes:>9} "
              f"{item.at.strftime('%Y-%m-%d %H:%M:%S'):<20} {replayed:<9} {reason[:100]}")
    print(f"{stage.name}: {len(items)} record(s) set aside, {sum(1 for i in items if i.replayed_at)} replayed")
    return OK


async def show_command(settings: CommonSettings, stage: Stage, wanted: str, *, full: bool) -> int:
    item = next((i for i in await set_aside(settings, stage) if i.coordinates == wanted), None)
    if item is None:
        print(f"{stage.name}: nothing set aside at {wanted}", file=sys.stderr)
        return UNKNOWN
    letter = item.letter
    print(f"coordinates:  {item.coordinates}\nkind:         {item.kind}\nset aside at: {item.at.isoformat()}")
    print(f"reason:       {letter.reason}\nrequest id:   {letter.request_id or '-'}")
    print(f"size:         {letter.payload_bytes} bytes, sha256 {letter.payload_sha256}")
    print(f"replayed:     {item.replayed_at.isoformat() if item.replayed_at else 'no'}")
    print(f"excerpt:\n{letter.excerpt}")
    original = await read_original(settings, letter)
    if original is None:
        print(f"original: not found at {item.coordinates}", file=sys.stderr)
        return FAILED
    value = original.value or b""
    shown = value if full else value[:SHOW_BYTES]
    print(f"original record (key {original.key!r}, headers {list(original.headers)!r}, {len(value)} bytes):")
    print(shown.decode("utf-8", errors="replace"))
    if len(shown) < len(value):
        print(f"... {len(value) - len(shown)} more bytes (--full prints them)")
    return OK


async def replay_command(settings: CommonSettings, stage: Stage, wanted: Sequence[str], *, every: bool,
                         progress: bool = True) -> int:
    items = await set_aside(settings, stage)
    by_coordinates = {i.coordinates: i for i in items}
    unknown = [w for w in wanted if w not in by_coordinates]
    if unknown:
        print(f"{stage.name}: nothing set aside at {', '.join(unknown)}", file=sys.stderr)
        return UNKNOWN
    chosen = [i for i in items if not i.replayed_at] if every else [by_coordinates[w] for w in wanted]
    status = OK
    producer = kafka.idempotent_producer(settings)
    await producer.start()
    try:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            for item in tqdm(chosen, unit="rec", desc="replay", file=sys.stderr, disable=not progress or len(chosen) < 2):
                outcome = await replay_one(settings, stage, conn, producer, item)
                if outcome.startswith("failed"):
                    status = FAILED
                tqdm.write(f"{item.coordinates}: {outcome}", file=sys.stdout)
    finally:
        await kafka.stop_clients(producer)
    if not chosen:
        print(f"{stage.name}: nothing to replay")
    return status


async def replay_one(settings: CommonSettings, stage: Stage, conn: psycopg.AsyncConnection, producer, item: SetAside) -> str:  # noqa: ANN001
    """Claim the replay in Postgres, send the original record again, then commit the claim: a
    failed send leaves it unclaimed; a crash after the send repeats only a send the request id
    makes harmless."""
    letter = item.letter
    original = await read_original(settings, letter)
    if original is None:
        return "failed: the original record is not at its coordinates"
    try:
        return await _claim_and_send(conn, producer, stage, letter, original)
    except ReplayFailed as exc:
        return str(exc)  # the claim was rolled back: a later replay tries again


async def _claim_and_send(conn: psycopg.AsyncConnection, producer, stage: Stage, letter: DeadLetter,  # noqa: ANN001
                          original: ConsumerRecord) -> str:
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO tally_dlq.replayed (source_topic, source_partition, source_offset, stage, target_topic)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (letter.source_topic, letter.partition, letter.offset, stage.name, letter.source_topic))
        if await cur.fetchone() is None:
            cur = await conn.execute("SELECT replayed_at FROM tally_dlq.replayed WHERE source_topic = %s"
                                     " AND source_partition = %s AND source_offset = %s",
                                     (letter.source_topic, letter.partition, letter.offset))
            (at,) = await cur.fetchone() or (None,)
            return f"already replayed at {at.isoformat() if at else '?'}: nothing done"
        try:
            sent = await producer.send_and_wait(letter.source_topic, original.value, key=original.key,
                                                headers=list(original.headers))
        except KafkaError as exc:
            raise ReplayFailed(f"failed: {type(exc).__name__}: {exc}") from exc
        await conn.execute("UPDATE tally_dlq.replayed SET target_partition = %s, target_offset = %s WHERE source_topic = %s"
                           " AND source_partition = %s AND source_offset = %s",
                           (sent.partition, sent.offset, letter.source_topic, letter.partition, letter.offset))
    return f"replayed to {letter.source_topic}[{sent.partition}] at offset {sent.offset}"


class ReplayFailed(Exception):
    """The original record could not be sent again; nothing was recorded."""


def add_dlq_parser(commands) -> None:  # noqa: ANN001 - argparse's subparsers action
    dlq = commands.add_parser("dlq", help="list, show and replay what this stage set aside")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    actions.add_parser("list", help="every dead letter and quarantined record: coordinates, kind, size, time, reason")
    show = actions.add_parser("show", help="one record: reason, excerpt and the original record from its source")
    show.add_argument("coordinates", help="topic:partition:offset, as `dlq list` prints it")
    show.add_argument("--full", action="store_true", help="print the whole original record")
    replay = actions.add_parser("replay", help="feed original records back to their topic, each exactly once")
    replay.add_argument("coordinates", nargs="*", help="topic:partition:offset, as `dlq list` prints it")
    replay.add_argument("--all", action="store_true", help="every record not yet replayed")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")


async def dlq_command(settings: CommonSettings, stage: Stage, args) -> int:  # noqa: ANN001 - argparse's namespace
    try:
        return await _dispatch(settings, stage, args)
    except (KafkaError, psycopg.Error, OSError) as exc:
        print(f"{stage.name} dlq: cannot reach Kafka or Postgres: {type(exc).__name__}: {exc}", file=sys.stderr)
        return FAILED


async def _dispatch(settings: CommonSettings, stage: Stage, args) -> int:  # noqa: ANN001
    if args.dlq_command == "list":
        return await list_command(settings, stage)
    if args.dlq_command == "show":
        return await show_command(settings, stage, args.coordinates, full=args.full)
    if bool(args.coordinates) == bool(args.all):
        print("dlq replay: name records by their coordinates, or --all", file=sys.stderr)
        return UNKNOWN
    return await replay_command(settings, stage, args.coordinates, every=args.all, progress=not args.no_progress)
