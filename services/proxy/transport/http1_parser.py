"""The HTTP/1.1 response parser of the upstream client (http1.py): httptools (llhttp, the parser
Node.js and uvicorn use) in its strict mode, with the checks and bounds it leaves to its caller.

llhttp refuses invalid framing itself: non-hex, negative or 64-bit-overflowing chunk sizes, chunk
data not followed by CRLF, a bare LF anywhere (RFC 9112 §2.2 allows accepting it in head lines;
llhttp does not, and no LLM server sends one), Content-Length given twice or together with
Transfer-Encoding (§6.3 allows refusing), a malformed status line, header lines without a colon,
obs-fold, NUL and other control bytes. On top of it this module refuses a Transfer-Encoding other
than exactly `chunked` (and Transfer-Encoding in an HTTP/1.0 answer), any protocol but HTTP/1.0
and 1.1 (llhttp also takes RTSP and ICE), status codes outside 100-599, an unrequested protocol
switch and bytes after the end of an answer; it skips interim (1xx) answers, reads and discards
trailers, and bounds the head, the trailers, the body and runs of framing without data.

Measured against a strict hand-written parser (bench/bench_http1_parser.py), llhttp costs less
per answer, several times less per streamed chunk. Every error is an UpstreamConnectionError:
the relay answers 502 and records the call as failed."""

from __future__ import annotations

import collections

import httptools

MAX_HEADER_BYTES = 64 * 1024
MAX_TRAILER_BYTES = 16 * 1024
MAX_INTERIM = 8  # 1xx answers (103 Early Hints, ...) skipped before the real one
FRAMING_ALLOWANCE = 2  # wire bytes (chunk sizes, extensions, trailers) per body byte, at most
# Framing bytes in a row without a body byte: a chunk-size line with its extensions, or the last
# chunk with its trailers. llhttp reads endless zeros or extensions as a valid chunk-size line.
MAX_FRAMING_RUN = MAX_TRAILER_BYTES + 4096
_PROTOCOL = b"HTTP/1."


class UpstreamConnectionError(ConnectionError):
    """The upstream could not be reached, or broke the connection or the protocol."""


class ProtocolError(UpstreamConnectionError):
    """The upstream's answer is not valid HTTP/1.1 framing."""


class TooLarge(ProtocolError):
    """The upstream's answer is larger than the client accepts."""


def size_text(size: int) -> str:
    """1048576 -> "1 MiB", 2048 -> "2 KiB", 1000 -> "1000 bytes": a limit as an operator set it."""
    for unit, scale in (("MiB", 1048576), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size / 1048576:.1f} MiB" if size >= 1048576 else f"{size} bytes"


class Parser:
    """Incremental HTTP/1.1 response parser: status, headers, then the body pieces.

    `limit` bounds the body bytes (as framed, before any Content-Encoding is undone); `sse_limit`,
    when given, replaces it for an answer of type text/event-stream, decided when the head
    arrives. The wire bytes of the whole answer are bounded too (FRAMING_ALLOWANCE), so framing
    alone (endless chunk extensions or empty chunks) cannot go on without end."""

    __slots__ = ("_http", "status", "headers", "framing", "done", "head_done", "body", "limit", "sse_limit",
                 "received", "fed", "run", "meta", "interim", "close_after", "seen", "sse", "prefix")

    def __init__(self, limit: int = 32 * 1048576, sse_limit: int | None = None) -> None:
        self._http: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.framing = ""  # "length" | "chunked" | "eof" | "" (no body)
        self.done = False
        self.head_done = False
        self.body: collections.deque[bytes] = collections.deque()
        self.limit = limit
        self.sse_limit = sse_limit
        self.received = 0  # body bytes so far
        self.fed = 0  # wire bytes so far, head included
        self.run = 0  # wire bytes since the last body byte
        self.meta = 0  # head (then trailer) bytes so far
        self.interim = 0
        self.close_after = False  # this connection ends with this answer
        self.seen = False  # any byte arrived
        self.sse = False  # a text/event-stream answer, bounded by sse_limit
        self.prefix = b""  # the answer's first bytes, until they show it is HTTP/1.x

    def feed(self, data: bytes) -> None:
        http = self._http
        if http is None:
            raise ProtocolError("upstream sent bytes after the end of its answer")
        self.seen = True
        if self.fed < len(_PROTOCOL):  # llhttp also takes RTSP/ and ICE/ answers
            self.prefix = (self.prefix + data)[:len(_PROTOCOL)]
            if not _PROTOCOL.startswith(self.prefix):
                raise ProtocolError(f"not an HTTP/1.x answer: {self.prefix!r}")
        self.fed += len(data)
        received = self.received
        try:
            http.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, UpstreamConnectionError):
                raise exc.__context__ from None  # one of the checks below
            raise ProtocolError(f"malformed upstream answer: {exc.__context__ or exc}") from exc
        except httptools.HttpParserUpgrade as exc:
            raise ProtocolError("upstream switched protocols without being asked") from exc
        except httptools.HttpParserError as exc:
            raise ProtocolError(f"malformed upstream answer: {exc}") from exc
        if self.done:
            self._http = None  # the parser and this object refer to each other: let both go now
        elif not self.head_done:
            if self.fed > MAX_HEADER_BYTES:
                raise self._head_too_large()
        else:
            self.run = self.run + len(data) if self.received == received else 0
            if self.run > MAX_FRAMING_RUN:
                raise ProtocolError(f"upstream sent over {MAX_FRAMING_RUN // 1024} KiB of chunk framing without data")
            if self.fed > self.limit * FRAMING_ALLOWANCE + MAX_HEADER_BYTES:
                raise TooLarge(f"upstream answer framing larger than {size_text(self.limit * FRAMING_ALLOWANCE)}")

    def cap(self, limit: int) -> None:
        """Lower the body limit now (a caller that buffers the whole answer)."""
        self.limit = min(self.limit, limit)
        pending = self._content_length() if self.framing == "length" else 0
        if max(self.received, pending) > self.limit:
            raise self._too_large()

    # -- llhttp's callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise ProtocolError("upstream sent bytes after the end of its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.meta += len(name) + len(value) + 4
        if self.head_done:  # a trailer: read, bounded, discarded
            if self.meta > MAX_TRAILER_BYTES:
                raise TooLarge(f"upstream trailers over {MAX_TRAILER_BYTES // 1024} KiB")
            return
        if self.meta > MAX_HEADER_BYTES:
            raise self._head_too_large()
        key = name.decode("latin-1").lower()
        headers = self.headers
        if key in headers:
            if key in ("content-length", "transfer-encoding"):
                raise ProtocolError(f"upstream sent {name.decode('latin-1')} twice")
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}"
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        http = self._http
        assert http is not None
        status = http.get_status_code()
        if not 100 <= status <= 599:
            raise ProtocolError(f"bad upstream status code {status}")
        if http.get_http_version() not in ("1.0", "1.1"):
            raise ProtocolError(f"not an HTTP/1.x answer: HTTP/{http.get_http_version()}")
        if status < 200:
            if status == 101:
                raise ProtocolError("upstream switched protocols without being asked")
            self.interim += 1
            if self.interim > MAX_INTERIM:
                raise ProtocolError(f"upstream sent more than {MAX_INTERIM} interim (1xx) answers")
            self.headers, self.meta, self.fed = {}, 0, 0  # an interim answer: the real one follows
            return
        self.status, self.head_done, self.meta = status, True, 0
        self.close_after = not http.should_keep_alive()
        headers = self.headers
        if self.sse_limit is not None and headers.get("content-type", "").lower().startswith("text/event-stream"):
            self.limit, self.sse = self.sse_limit, True
        te = headers.get("transfer-encoding")
        if status in (204, 304):
            self.framing = ""  # no body, whatever the headers say (RFC 9112 §6.3)
        elif te is not None:
            if te.strip().lower() != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {te[:40]!r}")
            if http.get_http_version() == "1.0":
                raise ProtocolError("upstream sent Transfer-Encoding in an HTTP/1.0 answer")
            self.framing = "chunked"
        elif "content-length" in headers:
            self.framing = "length"
            if self._content_length() > self.limit:
                raise self._too_large()
        else:
            self.framing = "eof"

    def on_body(self, body: bytes) -> None:
        self.received += len(body)
        if self.received > self.limit:
            raise self._too_large()
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True

    # -- helpers -------------------------------------------------------------------------------

    def _content_length(self) -> int:
        return int(self.headers["content-length"])  # llhttp accepted it: digits only

    def _too_large(self) -> TooLarge:
        return TooLarge(f"upstream answer larger than {size_text(self.limit)}")

    @staticmethod
    def _head_too_large() -> TooLarge:
        return TooLarge(f"upstream response headers over {MAX_HEADER_BYTES // 1024} KiB")
