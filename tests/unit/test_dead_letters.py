"""Dead letters stay bounded whatever they point at; sizes are checked; v1 letters upcast to v2; a stall is named."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from shared.dead_letters import dead_letter, encoded, is_record_error
from shared.events import DeadLetter, decode, encode
from shared.health import StageProgress
from shared.record_limits import (BROKER_MAX_MESSAGE_BYTES, MAX_RECORD_BYTES, RecordTooLarge, check_fits, excerpt, fits,
                                  record_bytes)

# The event that stopped the ledger: a NUL and 300,000 double quotes in its metadata.
POISON = orjson.dumps({"request_id": "r-1", "user": "a\x00b", "metadata": {"p": '"' * 300_000}})


def test_an_excerpt_is_the_payload_head_cut_at_the_limit():
    """ASCII is cut at exactly the limit; a short payload is kept whole."""
    assert excerpt(b"x" * 10_000) == "x" * 4096
    assert excerpt(b"short") == "short"


def test_an_excerpt_never_splits_a_character_nor_exceeds_its_bytes():
    """A two-byte character cut by the limit is left out; invalid bytes become U+FFFD within the byte limit."""
    assert excerpt("aé".encode() * 10, limit=5) == "aéa"  # a(1) é(2) a(1) + half an é
    bad = excerpt(b"\xff" * 10, limit=10)
    assert bad == "\ufffd" * 3 and len(bad.encode()) == 9


def test_the_poison_events_dead_letter_is_small_and_points_at_it():
    """The 600 KB poison event (600,058 bytes) gives a letter under 30 KB with its size, digest, request id and coordinates."""
    letter = dead_letter("priced.v1", 3, 1234, "request_id contains a NUL", POISON)
    value = encoded(letter)
    assert len(POISON) == 600_058
    assert len(value) < 30_000
    assert (letter.source_topic, letter.partition, letter.offset) == ("priced.v1", 3, 1234)
    assert letter.payload_bytes == 600_058
    assert letter.payload_sha256 == hashlib.sha256(POISON).hexdigest()
    assert letter.request_id == "r-1"
    assert letter.excerpt == POISON[:4096].decode()
    assert decode(value) == letter


def test_a_reason_is_bounded_and_a_nul_request_id_is_not_kept():
    """A 1 MB reason is cut to 1,000 characters; a request id holding a NUL is left out."""
    letter = dead_letter("t", 0, 0, "r" * 1_000_000, orjson.dumps({"request_id": "a\x00"}))
    assert len(letter.reason) == 1000 and letter.reason.endswith("…")
    assert letter.request_id is None


def test_a_v1_dead_letter_upcasts_to_v2():
    """The v1 payload becomes size, digest, excerpt and request id; the rest is kept."""
    payload = orjson.dumps({"usage_event": {"request_id": "r-9"}, "x": "y" * 5000}).decode()
    v1 = {"event_id": "e1", "type": "dead_letter", "schema_version": 1, "source_topic": "priced.v1", "partition": 2,
          "offset": 7, "reason": "no", "payload": payload, "failed_at": "2026-01-02T03:04:05Z"}
    letter = decode(orjson.dumps(v1))
    assert isinstance(letter, DeadLetter)
    assert letter.schema_version == 2 and letter.event_id == "e1" and letter.reason == "no"
    assert (letter.payload_bytes, letter.request_id) == (5043, "r-9")
    assert letter.payload_sha256 == hashlib.sha256(payload.encode()).hexdigest()
    assert letter.excerpt == payload[:4096]
    assert orjson.loads(encode(letter))["schema_version"] == 2


def test_record_sizes_count_key_value_and_headers_against_a_limit_with_headroom():
    """The limit leaves 48,588 bytes of the broker's 1,048,588 for overhead; one byte over does not fit."""
    assert MAX_RECORD_BYTES == 1_000_000 and BROKER_MAX_MESSAGE_BYTES - MAX_RECORD_BYTES == 48_588
    assert record_bytes(b"key", b"v" * 10, [("request_id", b"abc")]) == 3 + 10 + 10 + 3
    assert fits(b"k", b"v" * 999_999)
    assert not fits(b"k", b"v" * 1_000_000)
    with pytest.raises(RecordTooLarge, match="a totals record of 1000001 bytes is over the limit of 1000000 bytes"):
        check_fits("totals", b"k", b"v" * 1_000_000)


def test_only_record_specific_send_errors_set_a_record_aside():
    """A refused size sets the record aside; a broker that is down is retried."""
    assert is_record_error(MessageSizeTooLargeError())
    assert not is_record_error(KafkaConnectionError())


def test_a_partition_waiting_without_advancing_is_named_after_the_stall_time():
    """Lag is ends minus committed; a partition stuck past stall_after_s is named with its offset and the last error."""
    progress = StageProgress("ledger", stall_after_s=60)
    assert progress.observe({("priced.v1", 0): 1234, ("priced.v1", 1): 10}, {("priced.v1", 0): 1240, ("priced.v1", 1): 10},
                            now=100.0, wall=5000.0) == 6
    progress.note_error("MessageSizeTooLargeError: too big", wall=5070.0)
    assert progress.stuck(now=159.0, wall=5074.0) == []
    progress.observe({("priced.v1", 0): 1234, ("priced.v1", 1): 10}, {("priced.v1", 0): 1241, ("priced.v1", 1): 12},
                     now=175.0, wall=5075.0)
    assert progress.stuck(now=175.0, wall=5075.0) == [
        "ledger: priced.v1[0] at offset 1234 has not advanced for 75 s (7 waiting); last error (5 s ago):"
        " MessageSizeTooLargeError: too big"]
    assert progress.lag == 9 and progress.last_progress_at == 5000.0


def test_a_partition_that_advances_or_has_nothing_waiting_is_not_stalled():
    """Moving offsets reset the clock, and so does an empty backlog."""
    progress = StageProgress("pricer", stall_after_s=60)
    progress.observe({("usage.v1", 0): 5}, {("usage.v1", 0): 9}, now=0.0, wall=1.0)
    progress.observe({("usage.v1", 0): 6}, {("usage.v1", 0): 9}, now=50.0, wall=51.0)
    assert progress.stuck(now=100.0, wall=101.0) == []
    progress.observe({("usage.v1", 0): 9}, {("usage.v1", 0): 9}, now=200.0, wall=201.0)
    progress.observe({("usage.v1", 0): 9}, {("usage.v1", 0): 9}, now=300.0, wall=301.0)
    assert progress.stuck(now=300.0, wall=301.0) == [] and progress.last_progress_at == 201.0
