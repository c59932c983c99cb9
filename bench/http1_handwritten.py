"""The hand-written HTTP/1.1 response parser bench_http1_parser.py measures against the one the
proxy uses (services/proxy/transport/http1_parser.py, on httptools). Kept here, outside the services, only
to reproduce that comparison; it follows the same RFC 9112 rules:

- the status line must be `HTTP/1.0|1.1 NNN [reason]`; header lines must be `token:value`; obs-fold,
  NUL and bare CR are refused; a bare LF ending a head or trailer line is accepted (RFC 9112 §2.2
  allows it there), never in chunk framing, where CRLF is required;
- Content-Length is digits only and given once; Transfer-Encoding must be exactly `chunked`; both at
  once are refused (§6.3 allows refusing, and no LLM server sends both);
- a chunk-size line is hex digits with optional RFC-shaped extensions (ignored), at most
  MAX_CHUNK_LINE bytes; chunk data must be followed by CRLF; trailers are read and discarded, at
  most MAX_TRAILER_BYTES;
- the head is at most MAX_HEADER_BYTES; body bytes beyond `limit` raise TooLarge.

Pure: no I/O, no asyncio."""

from __future__ import annotations

import collections
import re

from services.proxy.transport.http1_parser import ProtocolError, TooLarge, size_text

MAX_HEADER_BYTES = 64 * 1024
MAX_TRAILER_BYTES = 16 * 1024
MAX_CHUNK_LINE = 4096  # size digits and extensions; Go's net/http allows the same
MAX_INTERIM = 8  # 1xx answers (103 Early Hints, ...) skipped before the real one

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*")
_STATUS = re.compile(r"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([\t -~\x80-\xff]*))?")
_FIELD_LINE = _TOKEN.decode() + r":[\t -~\x80-\xff]*"
_FIELDS = re.compile(rf"(?:{_FIELD_LINE}\r\n)*")  # a whole CRLF-terminated field section in one match
_FIELD = re.compile(_FIELD_LINE)
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a field section, CRLF or bare LF lines
_LINE_END = re.compile(r"\r?\n")

HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, EOF = range(7)


class Parser:
    """Incremental HTTP/1.1 response parser: status, headers, then the body pieces.

    `limit` bounds the body bytes (as framed, before any Content-Encoding is undone); `sse_limit`,
    when given, replaces it for an answer of type text/event-stream, decided when the head
    arrives."""

    __slots__ = ("buffer", "status", "reason", "version", "headers", "framing", "state", "remaining", "done",
                 "head_done", "body", "limit", "sse_limit", "received", "scanned", "interim", "close_after", "seen", "sse")

    def __init__(self, limit: int = 32 * 1048576, sse_limit: int | None = None) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.reason = ""
        self.version = 1  # the minor version: HTTP/1.0 or HTTP/1.1
        self.headers: dict[str, str] = {}
        self.framing = ""  # "length" | "chunked" | "eof" | "" (no body)
        self.state = HEAD
        self.remaining = 0  # bytes left of the body (length) or of the current chunk (chunked)
        self.done = False
        self.head_done = False
        self.body: collections.deque[bytes] = collections.deque()
        self.limit = limit
        self.sse_limit = sse_limit
        self.received = 0  # body bytes so far
        self.scanned = 0  # how far the search for the end of a field section got (head or trailers)
        self.interim = 0
        self.close_after = False  # the server says this connection ends with this answer
        self.seen = False  # any byte arrived
        self.sse = False  # a text/event-stream answer, bounded by sse_limit

    def feed(self, data: bytes) -> None:
        if self.done:
            raise ProtocolError("upstream sent bytes after the end of its answer")
        self.seen = True
        self.buffer += data
        if self.state == HEAD and not self._head():
            return
        state = self.state
        if state == LENGTH:
            self._length()
        elif state == EOF:
            self._eof()
        elif not self.done:
            self._chunks()

    def cap(self, limit: int) -> None:
        """Lower the body limit now (a caller that buffers the whole answer)."""
        self.limit = min(self.limit, limit)
        if self.received > self.limit or (self.state == LENGTH and self.received + self.remaining > self.limit):
            raise self._too_large()

    # -- the head ----------------------------------------------------------------------------

    def _head(self) -> bool:
        """Parse the head if it arrived whole; skip interim (1xx) answers. True once the final
        head is parsed."""
        buffer = self.buffer
        while True:
            match = _BLANK_LINE.search(buffer, max(0, self.scanned - 2))
            if match is None or match.start() >= MAX_HEADER_BYTES:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise TooLarge(f"upstream response headers over {MAX_HEADER_BYTES // 1024} KiB")
                self.scanned = len(buffer)
                return False
            self._parse_head(bytes(buffer[:match.start()]))
            del buffer[:match.end()]
            self.scanned = 0
            if self.state != HEAD:
                return True
            if self.done:  # 204 or 304
                self.head_done = True
                return False

    def _parse_head(self, raw: bytes) -> None:
        text = raw.decode("latin-1").removesuffix("\r")  # the last line's LF was in the blank-line match
        crlf = text.count("\r\n")
        if text.count("\r") != crlf:
            raise ProtocolError("upstream response head has a bare CR")
        if "\x00" in text:
            raise ProtocolError("upstream response head has a NUL byte")
        bare_lf = text.count("\n") != crlf
        status_line, _, fields = text.partition("\n")
        status_line = status_line.removesuffix("\r")
        match = _STATUS.fullmatch(status_line)
        if match is None:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(match.group(2))
        if status > 599:
            raise ProtocolError(f"bad status code in {status_line[:80]!r}")
        lines = _LINE_END.split(fields) if bare_lf else fields.split("\r\n")
        if fields and (bare_lf or not _FIELDS.fullmatch(fields + "\r\n")):
            _check_fields(lines)
        headers: dict[str, str] = {}
        if fields:
            for line in lines:
                name, _, value = line.partition(":")
                key = name.lower()
                value = value.strip(" \t")
                if key in headers:
                    if key in ("content-length", "transfer-encoding"):
                        raise ProtocolError(f"upstream sent {name} twice")
                    headers[key] = f"{headers[key]}, {value}"
                else:
                    headers[key] = value
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("upstream switched protocols without being asked")
            self.interim += 1
            if self.interim > MAX_INTERIM:
                raise ProtocolError(f"upstream sent more than {MAX_INTERIM} interim (1xx) answers")
            return  # an interim answer: the real one follows
        self.status, self.reason, self.headers = status, match.group(3) or "", headers
        self.version = int(match.group(1))
        self.head_done = True
        connection = headers.get("connection")
        self.close_after = self.version == 0 or (connection is not None and "close" in connection.lower())
        self._framing(headers)

    def _framing(self, headers: dict[str, str]) -> None:
        if self.sse_limit is not None and headers.get("content-type", "").lower().startswith("text/event-stream"):
            self.limit, self.sse = self.sse_limit, True
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        if self.status in (204, 304):
            self.done = True  # no body, whatever the headers say (RFC 9112 §6.3)
        elif te is not None:
            if cl is not None:
                raise ProtocolError("upstream sent both Content-Length and Transfer-Encoding")
            if self.version == 0:
                raise ProtocolError("upstream sent Transfer-Encoding in an HTTP/1.0 answer")
            if te.lower() != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {te[:40]!r}")
            self.framing, self.state = "chunked", CHUNK_SIZE
        elif cl is not None:
            if not (cl.isascii() and cl.isdigit()) or len(cl) > 18:
                raise ProtocolError(f"bad Content-Length {cl[:40]!r}")
            self.remaining = int(cl)
            if self.remaining > self.limit:
                raise self._too_large()
            self.framing, self.state = "length", LENGTH
            self.done = self.remaining == 0
        else:
            self.framing, self.state = "eof", EOF

    def _too_large(self) -> TooLarge:
        return TooLarge(f"upstream answer larger than {size_text(self.limit)}")

    # -- the body ----------------------------------------------------------------------------

    def _length(self) -> None:
        buffer = self.buffer
        if buffer and self.remaining:
            take = min(len(buffer), self.remaining)
            self.body.append(bytes(buffer[:take]) if take < len(buffer) else bytes(buffer))
            del buffer[:take]
            self.remaining -= take
            self.received += take
        self.done = self.remaining == 0

    def _eof(self) -> None:
        buffer = self.buffer
        if buffer:
            self.received += len(buffer)
            if self.received > self.limit:
                raise self._too_large()
            self.body.append(bytes(buffer))
            buffer.clear()

    def _chunks(self) -> None:
        buffer = self.buffer
        i, n = 0, len(buffer)  # walk with an offset; trim the buffer once at the end
        try:
            while i < n and not self.done:
                state = self.state
                if state == CHUNK_DATA:
                    take = min(n - i, self.remaining)
                    self.body.append(bytes(buffer[i:i + take]))
                    i += take
                    self.remaining -= take
                    if not self.remaining:
                        self.state = CHUNK_END
                elif state == CHUNK_END:
                    if buffer[i] != 13 or (n - i > 1 and buffer[i + 1] != 10):
                        raise ProtocolError("upstream chunk data not followed by CRLF")
                    if n - i < 2:
                        break
                    i += 2
                    self.state = CHUNK_SIZE
                else:
                    j = self._chunk_size(buffer, i, n) if state == CHUNK_SIZE else self._trailers(buffer, i, n)
                    if j < 0:
                        break  # the line or section is not complete yet
                    i = j
        finally:
            del buffer[:i]

    def _chunk_size(self, buffer: bytearray, i: int, n: int) -> int:
        """Where the chunk data starts, or -1 when the line is not complete yet."""
        end = buffer.find(b"\n", i, i + MAX_CHUNK_LINE + 2)
        if end < 0:
            if n - i > MAX_CHUNK_LINE:
                raise ProtocolError(f"upstream chunk-size line over {MAX_CHUNK_LINE} bytes")
            return -1
        if end == i or buffer[end - 1] != 13:
            raise ProtocolError("upstream chunk-size line not ended by CRLF")
        match = _CHUNK_LINE.fullmatch(buffer, i, end - 1)
        if match is None:
            raise ProtocolError(f"bad upstream chunk-size line {bytes(buffer[i:min(end - 1, i + 40)])!r}")
        size = int(match.group(1), 16)
        self.received += size
        if self.received > self.limit:
            raise self._too_large()
        self.remaining = size
        self.state = CHUNK_DATA if size else TRAILERS
        return end + 1

    def _trailers(self, buffer: bytearray, i: int, n: int) -> int:
        """Read (and discard) the trailer section after the last chunk; where it ends, or -1 when
        it is not complete yet."""
        if buffer[i] == 10 or buffer.startswith(b"\r\n", i):  # no trailers: the usual case
            self.done = True
            return i + (1 if buffer[i] == 10 else 2)
        if n - i == 1 and buffer[i] == 13:
            return -1
        match = _BLANK_LINE.search(buffer, i + max(0, self.scanned - 2))
        if match is None or match.start() - i >= MAX_TRAILER_BYTES:
            if n - i > MAX_TRAILER_BYTES:
                raise TooLarge(f"upstream trailers over {MAX_TRAILER_BYTES // 1024} KiB")
            self.scanned = n - i
            return -1
        text = bytes(buffer[i:match.start()]).decode("latin-1").removesuffix("\r")
        if "\x00" in text or text.count("\r") != text.count("\r\n"):
            raise ProtocolError("upstream trailers have a NUL byte or a bare CR")
        _check_fields(_LINE_END.split(text))
        self.done = True
        return match.end()


def _check_fields(lines: list[str]) -> None:
    """Say which field line is malformed (the slow path: only when the fast check failed)."""
    for line in lines:
        if _FIELD.fullmatch(line):
            continue
        if line[:1] in (" ", "\t"):
            raise ProtocolError("upstream used obsolete line folding (obs-fold) in a header")
        if ":" not in line:
            raise ProtocolError(f"upstream header line without a colon: {line[:40]!r}")
        raise ProtocolError(f"malformed upstream header line: {line[:40]!r}")
