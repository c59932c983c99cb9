"""AWS's `application/vnd.amazon.eventstream` framing (Bedrock's ConverseStream). Pure.

A message is: total length (uint32, big-endian), headers length (uint32), CRC32 of those eight
bytes, the headers, the payload, and the CRC32 of everything before it. A header is its name's
length (uint8), the name, a type byte and the typed value; Bedrock sends strings (type 7: uint16
length, UTF-8). Every length is checked before it is trusted, and both CRCs are verified: a
message that fails any check breaks the stream instead of being guessed at."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from services.proxy.transport.http1 import UpstreamConnectionError

PRELUDE = 12  # total length, headers length, prelude CRC
MIN_MESSAGE = PRELUDE + 4
MAX_MESSAGE = 16 * 1024 * 1024  # AWS's own limit for one event-stream message
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}  # type -> value size (bool true/false carry none)
_VARIABLE = (6, 7)  # byte array, string: uint16 length first


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (the fake provider frames its streams with this)."""
    head = b"".join(struct.pack(">B", len(n.encode())) + n.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
                    for n, v in headers.items())
    total = PRELUDE + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _headers(raw: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    pos = 0
    while pos < len(raw):
        size = raw[pos]
        name = raw[pos + 1: pos + 1 + size].decode("utf-8", "replace")
        pos += 1 + size
        if pos >= len(raw):
            raise UpstreamConnectionError("event-stream header without a type")
        kind = raw[pos]
        pos += 1
        if kind in _VARIABLE:
            if pos + 2 > len(raw):
                raise UpstreamConnectionError("event-stream header value cut short")
            (length,) = struct.unpack_from(">H", raw, pos)
            value: Any = raw[pos + 2: pos + 2 + length]
            pos += 2 + length
            if kind == 7:
                value = value.decode("utf-8", "replace")
        elif kind in _FIXED:
            value = kind == 0 if kind in (0, 1) else raw[pos: pos + _FIXED[kind]]
            pos += _FIXED[kind]
        else:
            raise UpstreamConnectionError(f"event-stream header of unknown type {kind}")
        if pos > len(raw):
            raise UpstreamConnectionError("event-stream header value cut short")
        headers[name] = value
    return headers


class EventStreamDecoder:
    """Bytes in (split anywhere), whole verified messages out as (headers, payload)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        self.buffer += data
        messages = []
        while len(self.buffer) >= PRELUDE:
            total, head_length, prelude_crc = struct.unpack_from(">III", self.buffer, 0)
            if zlib.crc32(self.buffer[:8]) != prelude_crc:
                raise UpstreamConnectionError("event-stream prelude CRC mismatch")
            if not MIN_MESSAGE <= total <= MAX_MESSAGE or head_length > total - MIN_MESSAGE:
                raise UpstreamConnectionError(f"event-stream message of impossible length {total} (headers {head_length})")
            if len(self.buffer) < total:
                break
            message = bytes(self.buffer[:total])
            del self.buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - 4)
            if zlib.crc32(message[:-4]) != message_crc:
                raise UpstreamConnectionError("event-stream message CRC mismatch")
            messages.append((_headers(message[PRELUDE: PRELUDE + head_length]), message[PRELUDE + head_length: -4]))
        return messages

    @property
    def pending(self) -> int:
        """Bytes of a message not finished yet (at the end of a stream: it was cut short)."""
        return len(self.buffer)
