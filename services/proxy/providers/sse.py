"""Server-sent events as OpenAI streams them: `data: {...}\n\n` … `data: [DONE]\n\n`. Pure.

The proxy passes upstream bytes through untouched except the one chunk that carries `usage`,
which it parses to price the call and rewrites with `"cost"` added (or drops, when the client did
not ask for usage)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import orjson

from services.proxy.transport.http1 import UpstreamConnectionError

DONE = b"[DONE]"
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def split_complete(buffer: bytes) -> tuple[bytes, bytes]:
    """(every complete event, the unfinished tail). Events end with a blank line."""
    if buffer.endswith(b"\n\n"):  # the usual case: the upstream wrote whole events
        return buffer, b""
    last = None
    for last in _EVENT_END.finditer(buffer):
        pass
    if last is None:
        return b"", buffer
    return buffer[: last.end()], buffer[last.end():]


def iter_events(block: bytes) -> Iterator[tuple[bytes | None, bytes, bytes]]:
    """(event name or None, data payload, the event's raw bytes incl. its blank line) per event."""
    start = 0
    for end in _EVENT_END.finditer(block):
        raw = block[start:end.end()]
        start = end.end()
        name: bytes | None = None
        data: list[bytes] = []
        for line in raw.splitlines():
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        yield name, b"\n".join(data), raw


def json_event(payload: bytes) -> dict[str, Any]:
    """An event's data as a JSON object; anything else breaks the stream (it cannot be translated)."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamConnectionError(f"the stream carried an event that is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise UpstreamConnectionError(f"the stream carried a JSON {type(event).__name__}, not an event object")
    return event


class JsonEvents:
    """A stream fed in pieces split anywhere, as (event name or None, JSON object) per event."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes | None, dict[str, Any]]]:
        block, self.buffer = split_complete(self.buffer + data)
        return [(name, json_event(payload)) for name, payload, _raw in iter_events(block) if payload and payload != DONE]


def has_usage(block: bytes) -> bool:
    return b'"usage"' in block and _USAGE.search(block) is not None


def encode_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def money_fragment(amount: Decimal) -> orjson.Fragment:
    """A JSON number with the exact digits of `amount` (never a float, never 1e-05)."""
    return orjson.Fragment(format_money(amount).encode())


def format_money(amount: Decimal) -> str:
    """"0.000051": plain decimal text, no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def rewrite_usage(block: bytes, on_usage: Callable[[dict[str, Any]], Decimal | None], keep: bool,
                  on_invalid: Callable[[bytes], None] | None = None) -> bytes:
    """Call `on_usage(chunk)` for each chunk carrying a usage object; put the returned cost into
    that chunk's usage as "cost" when `keep`, else drop the usage (and the chunk, when it carries
    nothing else). Every other byte passes untouched: only the events holding "usage": {...} are
    parsed. An event that looks like a usage chunk but is not JSON passes untouched too, and is
    handed to `on_invalid`: the proxy relays what it cannot read rather than break the stream."""
    out: list[bytes] = []
    pos = 0
    for match in _USAGE.finditer(block):
        if match.start() < pos:
            continue  # inside an event already rewritten
        start = _event_start(block, pos, match.start())
        end_match = _EVENT_END.search(block, match.end())
        end = len(block) if end_match is None else end_match.end()
        out.append(block[pos:start])
        out.append(_rewrite_event(block[start:end], on_usage, keep, on_invalid))
        pos = end
    out.append(block[pos:])
    return b"".join(out)


def _event_start(block: bytes, low: int, high: int) -> int:
    lf = block.rfind(b"\n\n", low, high)
    crlf = block.rfind(b"\r\n\r\n", low, high)
    if lf < 0 and crlf < 0:
        return low
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def _rewrite_event(raw: bytes, on_usage: Callable[[dict[str, Any]], Decimal | None], keep: bool,
                   on_invalid: Callable[[bytes], None] | None) -> bytes:
    out: list[bytes] = []
    for _name, data, event in iter_events(raw if _EVENT_END.search(raw) else raw + b"\n\n"):
        try:
            chunk = orjson.loads(data) if data and data != DONE else None
        except orjson.JSONDecodeError:
            if on_invalid is not None:
                on_invalid(event)
            out.append(event)
            continue
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if not isinstance(usage, dict):
            out.append(event)
            continue
        cost = on_usage(chunk)
        if keep:
            if cost is not None:
                chunk["usage"] = {**usage, "cost": money_fragment(cost)}
            out.append(encode_event(chunk))
        elif chunk.get("choices"):
            chunk.pop("usage")
            out.append(encode_event(chunk))
    return b"".join(out)
