"""How large a record a stage may write, and how a payload is cut down to an excerpt (pure).

Every record a stage produces (usage, priced, dead-letter, totals) must fit the broker's message
limit: a record the broker refuses fails its send, and a stage that retries the send re-reads the
same input for ever. Sizes are checked before producing, against one limit with headroom."""

from __future__ import annotations

import codecs
import hashlib

# The broker's and topics' default max.message.bytes: the largest record batch it accepts.
BROKER_MAX_MESSAGE_BYTES = 1_048_588
# A record batch adds a 61-byte header and each record ~20 bytes of varints and attributes; the
# rest of the headroom covers headers we have not counted and a broker a little below default.
RECORD_OVERHEAD_BYTES = 48_588
# The largest key + value + headers a stage may produce as one record.
MAX_RECORD_BYTES = BROKER_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES  # 1,000,000
# How much of a refused payload a dead letter or a quarantine row carries.
EXCERPT_BYTES = 4096
# A reason is a sentence, not a payload: longer ones are cut.
REASON_CHARS = 1000

Headers = list[tuple[str, bytes]] | None


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers = None) -> int:
    """The bytes a record carries that grow with its content (key, value, header names and values)."""
    size = len(key or b"") + len(value or b"")
    for name, header in headers or ():
        size += len(name.encode()) + len(header or b"")
    return size


def fits(key: bytes | None, value: bytes | None, headers: Headers = None, limit: int = MAX_RECORD_BYTES) -> bool:
    return record_bytes(key, value, headers) <= limit


class RecordTooLarge(ValueError):
    """A record a stage was about to produce is over MAX_RECORD_BYTES."""


def check_fits(what: str, key: bytes | None, value: bytes | None, headers: Headers = None) -> None:
    """For records that are small by construction (totals, dead letters): prove it on every send."""
    size = record_bytes(key, value, headers)
    if size > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"a {what} record of {size} bytes is over the limit of {MAX_RECORD_BYTES} bytes")


def excerpt(raw: bytes, limit: int = EXCERPT_BYTES) -> str:
    """The first `limit` bytes of `raw` as valid text, never over `limit` bytes in UTF-8: a
    character cut by the limit is left out, and undecodable bytes become U+FFFD (3 bytes where
    the bad byte took 1, so the text is trimmed again to stay within the limit)."""
    # Not final: an incomplete sequence at the cut is held back, not turned into U+FFFD.
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(raw[:limit], final=len(raw) <= limit)
    over = len(text.encode("utf-8")) - limit
    while over > 0:
        text = text[: len(text) - max(1, over // 3)]
        over = len(text.encode("utf-8")) - limit
    return text


def bounded_reason(reason: str) -> str:
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
