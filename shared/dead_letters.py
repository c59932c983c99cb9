"""Dead letters: the bounded record a stage writes for an input it sets aside, and which send
failures are the record's fault (set it aside) rather than the broker's (retry)."""

from __future__ import annotations

import structlog
from aiokafka.errors import (CorruptRecordException, InvalidMessageError, InvalidTopicError, MessageSizeTooLargeError,
                             RecordListTooLargeError, RecordTooLargeError)

from shared.events import DeadLetter, encode, request_id_in
from shared.record_limits import bounded_reason, check_fits, excerpt, sha256_hex

log = structlog.get_logger(__name__)

# Errors that sending this record again will meet again: retrying would stop the stage for good.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException,
    InvalidMessageError, InvalidTopicError,
)


def is_record_error(exc: BaseException) -> bool:
    return isinstance(exc, RECORD_ERRORS)


def dead_letter(source_topic: str, partition: int, offset: int, reason: str, raw: bytes | None) -> DeadLetter:
    """The letter for the record at (source_topic, partition, offset): its size, digest and a
    bounded excerpt, never the payload itself (the source topic keeps that)."""
    raw = raw or b""
    return DeadLetter(source_topic=source_topic, partition=partition, offset=offset, reason=bounded_reason(reason),
                      request_id=request_id_in(raw) if raw else None, payload_bytes=len(raw),
                      payload_sha256=sha256_hex(raw), excerpt=excerpt(raw))


def dead_letter_key(letter: DeadLetter) -> bytes:
    return f"{letter.source_topic}:{letter.partition}:{letter.offset}".encode()


def encoded(letter: DeadLetter) -> bytes:
    """The letter's JSON, proved under the record limit (it is bounded by construction)."""
    value = encode(letter)
    check_fits("dead-letter", dead_letter_key(letter), value)
    return value
