"""A small HTTP/1.1 client for the upstream calls: keep-alive connections per origin, reused.

Why not aiohttp's client: on this hot path it costs several times the CPU of everything else the
proxy does per call (measured with bench/bench_proxy.py). Upstream LLM APIs need little of HTTP:
a POST with a JSON body, answered by a Content-Length or chunked body (JSON, or server-sent
events). This client does exactly that over asyncio protocols, with TLS, gzip/deflate answers,
timeouts, and one retry when a reused idle connection turns out to be closed by the server.
Redirects, proxies, HTTP/2, cookies: not needed and not done."""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
T = TypeVar("T")


class UpstreamConnectionError(ConnectionError):
    """The upstream could not be reached, or broke the connection or the protocol."""


class UpstreamTimeout(TimeoutError):
    """The call's deadline passed before the whole answer arrived."""


class _Parser:
    """Incremental HTTP/1.1 response parser: status, headers, then the decoded body pieces."""

    __slots__ = ("buffer", "status", "reason", "headers", "framing", "remaining", "done", "body", "head_done")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.framing = ""  # "length" | "chunked" | "eof"
        self.remaining = 0  # bytes left of the body (length) or of the current chunk (chunked)
        self.done = False
        self.head_done = False
        self.body: collections.deque[bytes] = collections.deque()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.head_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    raise UpstreamConnectionError("upstream response headers too large")
                return
            self._head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
        self._body()

    def _head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise UpstreamConnectionError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        try:
            self.status = int(parts[1])
        except ValueError as exc:
            raise UpstreamConnectionError(f"bad status line: {lines[0][:80]!r}") from exc
        self.reason = parts[2] if len(parts) > 2 else ""
        headers = self.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        self.head_done = True
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.done = True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.framing, self.remaining = "chunked", -1
        elif "content-length" in headers:
            self.framing, self.remaining = "length", int(headers["content-length"])
            self.done = self.remaining == 0
        else:
            self.framing = "eof"

    def _body(self) -> None:
        buffer = self.buffer
        if self.framing == "length":
            if buffer:
                take = min(len(buffer), self.remaining)
                self.body.append(bytes(buffer[:take]))
                del buffer[:take]
                self.remaining -= take
                self.done = self.remaining == 0
        elif self.framing == "chunked":
            i, n = 0, len(buffer)  # walk with an offset; trim the buffer once at the end
            while i < n and not self.done:
                if self.remaining < 0:  # expecting a chunk-size line
                    end = buffer.find(b"\r\n", i)
                    if end < 0:
                        break
                    size = int(bytes(buffer[i:end]).split(b";", 1)[0].strip() or b"0", 16)
                    i = end + 2
                    if size == 0:
                        self.done = True  # trailers, if any, are ignored
                        i = n
                        break
                    self.remaining = size
                take = min(n - i, self.remaining)
                if take:
                    self.body.append(bytes(buffer[i:i + take]))
                    i += take
                    self.remaining -= take
                if self.remaining == 0:
                    if n - i < 2:
                        break
                    i += 2  # the CRLF after the chunk
                    self.remaining = -1
            del buffer[:i]
        elif self.framing == "eof" and buffer:
            self.body.append(bytes(buffer))
            buffer.clear()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop  # asyncio.get_running_loop() costs a getpid(2) per call on Python 3.11
        self.transport: asyncio.Transport | None = None
        self.parser: _Parser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.error: BaseException | None = None
        self.used = False  # has served a request before (a closed idle connection may be retried)
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        """Fail the request on this connection at `deadline` (loop time): one timer per call,
        cheaper than an asyncio.timeout around each await."""
        self.timer = self.loop.call_at(deadline, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        self.error = UpstreamTimeout("the upstream did not answer within the timeout")
        if self.transport is not None:
            self.transport.close()  # half an answer cannot be reused
        self._wake()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            self.error = UpstreamConnectionError("upstream sent data without a request")
            self.transport.close()  # type: ignore[union-attr]
            return
        try:
            parser.feed(data)
        except (UpstreamConnectionError, ValueError) as exc:
            self.error = exc if isinstance(exc, UpstreamConnectionError) else UpstreamConnectionError(str(exc))
            self.transport.close()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool | None:
        parser = self.parser
        if parser is not None and parser.framing == "eof":
            parser.done = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self.parser
        if parser is not None and parser.head_done and parser.framing == "eof":
            parser.done = True
        elif self.error is None and (parser is None or not parser.done):
            self.error = UpstreamConnectionError(f"upstream closed the connection{': ' + str(exc) if exc else ''}")
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Response:
    """An upstream answer: status and headers now, the body by read() or iter_chunks()."""

    __slots__ = ("status", "headers", "_conn", "_parser", "_decoder", "_released")

    def __init__(self, conn: _Connection, parser: _Parser) -> None:
        self.status = parser.status
        self.headers = parser.headers
        self._conn = conn
        self._parser = parser
        self._released = False
        encoding = parser.headers.get("content-encoding", "").lower()
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS) if encoding in ("gzip", "deflate") else None

    @property
    def buffered(self) -> bool:
        """Body bytes arrived and wait to be read."""
        return bool(self._parser.body)

    @property
    def complete(self) -> bool:
        """The whole answer arrived: what is buffered is all there will be."""
        return self._parser.done

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The decoded body as it arrives."""
        parser, conn = self._parser, self._conn
        body = parser.body
        while True:
            if body:  # everything that arrived so far, in one piece: fewer writes downstream
                piece = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                yield self._decoder.decompress(piece) if self._decoder is not None else piece
                continue
            if parser.done:
                break
            if conn.error is not None:
                raise conn.error
            await conn._wait()
        self.release()

    async def read(self) -> bytes:
        parser, conn = self._parser, self._conn
        while not parser.done:
            if conn.error is not None:
                raise conn.error
            await conn._wait()
        data = b"".join(parser.body)
        parser.body.clear()
        self.release()
        return self._decoder.decompress(data) if self._decoder is not None else data

    def release(self) -> None:
        """Give the connection back when the answer was read to its end; otherwise close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.disarm()
        reusable = self._parser.done and not conn.closed and self._parser.framing != "eof" \
            and self.headers.get("connection", "").lower() != "close"
        conn.parser = None
        if reusable:
            conn.pool._put(conn)
        else:
            conn.pool._drop(conn)


async def _by_deadline(waiting: Awaitable[T], deadline: float | None, what: str) -> T:
    """`waiting` awaited until `deadline` (loop time, None: no limit); past it, UpstreamTimeout(what)."""
    if deadline is None:
        return await waiting
    try:
        async with asyncio.timeout_at(deadline):
            return await waiting
    except TimeoutError as exc:
        raise UpstreamTimeout(what) from exc


class _Slots:
    """At most `limit` holders, waiters served first come first served: asyncio.Semaphore without
    its generator expressions and coroutine on every call that finds a slot free."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (the caller found none free)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the first waiter
                return
        self.free += 1


class Pool:
    """Keep-alive connections to one origin (scheme://host:port), at most `limit` at a time."""

    def __init__(self, origin: str, limit: int = 200, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(origin)
        self.host = parts.hostname or "localhost"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = self.host if parts.port in (None, 80, 443) else f"{self.host}:{self.port}"
        self.ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0
        self._slots = _Slots(limit)
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def deadline(self, seconds: float) -> float:
        """The loop time `seconds` from now, as post() takes it."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time() + seconds

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await loop.create_connection(
                lambda: _Connection(self, loop), self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.tls else None)
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._open += 1
        return conn

    def _get_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._open -= 1
        return None

    def _put(self, conn: _Connection) -> None:
        conn.used = True
        if self._closing:
            self._drop(conn)
        else:
            self._idle.append(conn)
        self._slots.release()

    def _drop(self, conn: _Connection) -> None:
        conn.disarm()
        if conn.transport is not None:
            conn.transport.close()
        self._open -= 1
        self._slots.release()

    async def post(self, target: str, body: bytes, headers: bytes, deadline: float | None = None) -> Response:
        """POST `body` to path+query `target`; `headers` are ready-made "Name: value\\r\\n" lines.
        Returns once the status line and headers arrived. With a `deadline` (loop time), waiting
        for a connection, the headers or the body (Response.read) past it raises UpstreamTimeout."""
        if not self._slots.try_take():  # the usual case takes a free slot: no timer, no await
            await _by_deadline(self._slots.take(), deadline, "no connection to the upstream came free within the timeout")
        head = (f"POST {target} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n").encode() + headers + b"\r\n"
        for attempt in (0, 1):
            conn = self._get_idle()
            if conn is None:
                try:
                    conn = await _by_deadline(self._connect(), deadline, f"cannot connect to {self.host}:{self.port} within the timeout")
                except BaseException:
                    self._slots.release()
                    raise
            parser = conn.parser = _Parser()
            conn.error = None
            if deadline is not None:
                conn.arm(deadline)
            try:
                conn.transport.write(head + body)  # type: ignore[union-attr]
                while not parser.head_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn._wait()
            except UpstreamConnectionError:
                conn.parser = None
                conn.disarm()
                reused = conn.used
                if conn.transport is not None:
                    conn.transport.close()
                self._open -= 1
                if attempt == 0 and reused and not parser.head_done and not parser.buffer:
                    continue  # the server had closed this idle keep-alive connection: once more on a fresh one
                self._slots.release()
                raise
            except BaseException:  # cancelled or timed out mid-request: the connection is unusable
                conn.parser = None
                conn.disarm()
                if conn.transport is not None:
                    conn.transport.close()
                self._open -= 1
                self._slots.release()
                raise
            return Response(conn, parser)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closing = True
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing
