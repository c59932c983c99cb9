"""A plain (non-streamed) answer written as one ready-made block of bytes.

aiohttp's `web.Response` builds a header multidict per call, fills in Content-Type, Content-Length,
Date, Server and Connection, serialises the lot and writes it through four layers of coroutines.
A relayed answer has a fixed shape (200, JSON, the deployment's constant x-litellm-model-*
headers, a few per call), so `Answer` writes the same head from pieces prepared at start-up: one
string, one encode, one write together with the body. tests/unit/test_proxy_answer.py proves the
head equals what `web.Response` writes, for keep-alive, `Connection: close` and HTTP/1.0 clients.

Not for errors (they go through the error middleware as `web.Response`s) nor streams."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11
from aiohttp.abc import AbstractStreamWriter

from services.proxy.transport.aiohttp_private import already_sent, mark_sent_whole

JSON = "application/json"


def header_lines(headers: Mapping[str, str]) -> str:
    """"Name: value\\r\\n" lines; a value that would split the head is refused (as aiohttp does)."""
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"newline in header {name!r}")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


class _HttpDate:
    """The Date header's value, formatted once a second (as aiohttp does)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, formatdate(second, usegmt=True)
        return self._text


http_date = _HttpDate()
_TAIL = f"\r\nServer: {SERVER_SOFTWARE}\r\n"


class Answer(web.StreamResponse):
    """Status 200 with `lines` (ready-made header lines, Content-Type included) and `body`.

    The whole message leaves in `prepare`, in one write; Content-Length, Date, Server and
    Connection are added as aiohttp adds them. `headers` stays empty: nothing reads it on this path
    (the app has no on_response_prepare hook)."""

    def __init__(self, lines: str, body: bytes) -> None:
        super().__init__()
        self._lines = lines
        self._payload = body

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if already_sent(self):
            return None
        writer = request.writer
        keep_alive = request.keep_alive
        version = request.version
        if version == HttpVersion11:
            status, connection = "HTTP/1.1 200 OK\r\n", "" if keep_alive else "Connection: close\r\n"
        else:
            status = f"HTTP/{version.major}.{version.minor} 200 OK\r\n"
            connection = "Connection: keep-alive\r\n" if keep_alive and version == HttpVersion10 else ""
        body = self._payload
        head = f"{status}{self._lines}Content-Length: {len(body)}\r\nDate: {http_date()}{_TAIL}{connection}\r\n"
        mark_sent_whole(self, keep_alive, len(body))
        await writer.write_eof(head.encode() + body)
        return None
