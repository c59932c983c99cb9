"""Draining one spool file to Kafka so that no record can stop it.

The lines are sent in order, a chunk at a time. A line that is not a usage event, or that Kafka
refuses for a reason of its own (over the topic's `max.message.bytes`, over the producer's request
size), is set aside (set_aside.py) and the drain goes on. Any other failure (no broker, a timeout, a
broken producer) ends this attempt: what was done before it is marked durably in the spool, and
the next attempt resumes after it. A record over the topic's limit is set aside before it is sent:
the broker refusing one would break the idempotent producer's sequence for its partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from services.proxy.usage_log.set_aside import SetAside
from services.proxy.usage_log.spool import Spool

log = structlog.get_logger(__name__)

RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError)  # about the record, not the broker
CHUNK = 500  # lines sent between two progress marks


@dataclass
class Outcome:
    sent: int = 0
    set_aside: int = 0
    error: BaseException | None = None  # a failure that ended the attempt
    producer_broken: bool = False  # the broker refused a batch: the partition's sequence has a gap
    careful_until: int = 0  # lines before this one go one at a time next attempt, to find the culprit


def batch_size(key: bytes, value: bytes, request_id: bytes) -> int:
    """An upper bound of the record batch holding only this record: what the broker compares with
    the topic's max.message.bytes."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [("request_id", request_id)]))


def parse(value: bytes, limit: int | None) -> tuple[bytes, bytes] | str:
    """The record's key and request id, or why it cannot be sent."""
    try:
        head = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(head, dict):
        return "not a JSON object"
    key, request_id = head.get("api_key_hash"), head.get("request_id")
    if not isinstance(key, str) or not isinstance(request_id, str):
        return "no api_key_hash or request_id"
    encoded = key.encode(), request_id.encode()
    if limit is not None and (size := batch_size(encoded[0], value, encoded[1])) > limit:
        return f"MessageSizeTooLargeError: {size} bytes, over the topic's max.message.bytes ({limit})"
    return encoded


def describe(exc: BaseException) -> str:
    """The error's name and message, once (aiokafka's messages often start with the name)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}"


async def drain_file(producer: AIOKafkaProducer, topic: str, spool: Spool, set_aside: SetAside, path: Path, *,
                     limit: int | None, timeout: float, chunk: int = CHUNK, careful_until: int = 0) -> Outcome:
    """Send what is left of one draining file; release it when every line is done. OSError from
    the disk (marker, set-aside file) propagates: nothing after the last mark counts as done.

    The broker refuses a whole batch when it is too large, so a refusal says which record is at
    fault only when the record was alone: lines before `careful_until` are sent one at a time."""
    lines = spool.read(path)
    done = min(spool.progress(path), len(lines))
    outcome = Outcome()
    while done < len(lines):
        careful = done < careful_until
        part = lines[done:done + (1 if careful else chunk)]
        reasons: dict[int, str] = {}
        futures: dict[int, asyncio.Future] = {}  # type: ignore[type-arg]
        handled = len(part)  # lines of `part` done, counted from its start
        for i, value in enumerate(part):
            parsed = parse(value, limit)
            if isinstance(parsed, str):
                reasons[i] = parsed
                continue
            key, request_id = parsed
            try:
                futures[i] = await producer.send(topic, value, key=key, headers=[("request_id", request_id)])
            except RECORD_ERRORS as exc:
                reasons[i] = describe(exc)
            except (KafkaError, OSError) as exc:
                outcome.error, handled = exc, i
                break
        if futures:
            finished, _ = await asyncio.wait(futures.values(), timeout=timeout)
            for i, future in sorted(futures.items()):
                failure = _failure(future, finished, timeout)
                if failure is None or i >= handled:
                    continue
                if isinstance(failure, RECORD_ERRORS):
                    outcome.producer_broken = True
                    if careful:  # refused alone: the record's own fault
                        reasons[i] = describe(failure)
                        outcome.error, handled = failure, i + 1
                        continue
                    outcome.careful_until = done + len(part)
                outcome.error, handled = failure, i
        aside = [(part[i], reason) for i, reason in sorted(reasons.items()) if i < handled]
        if aside:
            set_aside.add(aside, source=path.name)
            for raw, reason in aside:
                log.error("usage_event_set_aside", file=path.name, reason=reason, bytes=len(raw))
        outcome.sent += sum(1 for i in futures if i < handled and i not in reasons)
        outcome.set_aside += len(aside)
        done += handled
        if outcome.error is not None:
            if handled:
                spool.advance(path, done)
            return outcome
        if done < len(lines):
            spool.advance(path, done)
    spool.release(path, len(lines) - spool.progress(path))
    return outcome


def _failure(future: asyncio.Future, finished: set[asyncio.Future], timeout: float) -> BaseException | None:  # type: ignore[type-arg]
    if future not in finished:
        return asyncio.TimeoutError(f"Kafka did not acknowledge a spooled usage event in {timeout}s")
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()


async def topic_message_limit(bootstrap_servers: str, topic: str) -> int | None:
    """The topic's max.message.bytes as the broker reports it (its own or the broker's default),
    or None when the broker does not say."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await admin.start()
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})])
    finally:
        await admin.close()
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "max.message.bytes" and str(entry[1]).isdigit():
                    return int(entry[1])
    return None
