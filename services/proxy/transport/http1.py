"""A small HTTP/1.1 client for the upstream calls: keep-alive connections per origin, reused.

Why not aiohttp's client: on this hot path it costs several times the CPU of everything else the
proxy does per call (measured with bench/bench_proxy.py). Upstream LLM APIs need little of HTTP:
a POST with a JSON body, answered by a Content-Length or chunked body (JSON, or server-sent
events). This client does exactly that over asyncio protocols, with TLS, gzip/deflate answers,
timeouts, and one retry when a reused idle connection turns out to be closed by the server.
Redirects, proxies, HTTP/2, cookies: not needed and not done.

An upstream is not trusted: http1_parser.py refuses malformed framing, and Limits bound the size
of an answer (decoded too), of one server-sent event, and the time a stream may run
(docs/upstream-client.md). Every such refusal is an UpstreamConnectionError or UpstreamTimeout."""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from services.proxy.transport.http1_parser import MAX_HEADER_BYTES, Parser, UpstreamConnectionError, size_text

__all__ = ["Limits", "MAX_HEADER_BYTES", "Pool", "Response", "UpstreamConnectionError", "UpstreamTimeout"]

MiB = 1024 * 1024
_INFLATE_STEP = MiB  # a compressed stream is inflated at most this much at a time
T = TypeVar("T")
_Parser = Parser  # the name the unit tests know


class UpstreamTimeout(TimeoutError):
    """The call's deadline passed before the whole answer arrived."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of an upstream answer the client takes (docs/upstream-client.md).

    body_bytes bounds an answer read whole (Response.read), before and after gzip/deflate is
    undone; stream_bytes the same for a text/event-stream answer read by iter_chunks;
    event_bytes one server-sent event not yet ended by a blank line (what a relay has to hold);
    stream_s the whole life of a call posted without a deadline (a stream), None: no bound."""

    body_bytes: int = 32 * MiB
    stream_bytes: int = 256 * MiB
    event_bytes: int = 4 * MiB
    stream_s: float | None = 3600.0


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop  # asyncio.get_running_loop() costs a getpid(2) per call on Python 3.11
        self.transport: asyncio.Transport | None = None
        self.parser: Parser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.error: BaseException | None = None
        self.used = False  # has served a request before (a closed idle connection may be retried)
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, deadline: float, why: str = "the upstream did not answer within the timeout") -> None:
        """Fail the request on this connection at `deadline` (loop time) with UpstreamTimeout(why):
        one timer per call, cheaper than an asyncio.timeout around each await."""
        self.timer = self.loop.call_at(deadline, self._expire, why)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self, why: str) -> None:
        self.timer = None
        self.abort(UpstreamTimeout(why))

    def abort(self, error: BaseException) -> None:
        """End the request on this connection with `error`: half an answer cannot be reused."""
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            self.abort(UpstreamConnectionError("upstream sent data without a request"))
            return
        try:
            parser.feed(data)
        except UpstreamConnectionError as exc:  # malformed or too large: the parser says which
            self.abort(exc)
            return
        self._wake()

    def eof_received(self) -> bool | None:
        parser = self.parser
        if parser is not None and parser.framing == "eof" and self.error is None:
            parser.done = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self.parser
        if self.error is None and parser is not None and not parser.done:
            if parser.framing == "eof" and exc is None:
                parser.done = True  # the end of the connection is the end of this answer
            else:
                where = "before the end of its answer" if parser.head_done else "before answering"
                self.error = UpstreamConnectionError(f"upstream closed the connection {where}{': ' + str(exc) if exc else ''}")
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

    __slots__ = ("status", "headers", "_conn", "_parser", "_decoder", "_released", "_limits", "_sse", "_pending",
                 "_tail", "_streamed")

    def __init__(self, conn: _Connection, parser: Parser, limits: Limits) -> None:
        self.status = parser.status
        self.headers = parser.headers
        self._conn = conn
        self._parser = parser
        self._released = False
        self._limits = limits
        self._sse = parser.sse
        self._pending = 0  # bytes of the last server-sent event not yet ended by a blank line
        self._tail = b""  # the last bytes seen, for a blank line split between two pieces
        self._streamed = 0  # decoded bytes given out by iter_chunks
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
        """The decoded body as it arrives. A text/event-stream answer is bounded by the pool's
        Limits.stream_bytes in all and Limits.event_bytes per event; any other by body_bytes.
        Over a bound: UpstreamConnectionError, and the connection is closed."""
        parser, conn = self._parser, self._conn
        body = parser.body
        while True:
            if body:  # everything that arrived so far, in one piece: fewer writes downstream
                piece = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                if self._decoder is not None:
                    for out in self._inflate(piece):
                        yield out
                    continue
                if self._sse:
                    self._count(piece)
                yield piece
                continue
            if parser.done:
                break
            if conn.error is not None:
                raise conn.error
            await conn._wait()
        self.release()

    def _inflate(self, piece: bytes) -> list[bytes]:
        """`piece` decompressed in steps of at most _INFLATE_STEP, each counted against the limits."""
        decoder, out = self._decoder, []
        assert decoder is not None
        while piece:
            data = decoder.decompress(piece, _INFLATE_STEP)
            piece = decoder.unconsumed_tail
            self._streamed += len(data)
            limit = self._parser.limit
            if self._streamed > limit:
                raise self._fail(f"decoded upstream answer larger than {size_text(limit)}")
            if self._sse:
                self._count(data)
            out.append(data)
        return out

    def _count(self, piece: bytes) -> None:
        """Keep count of the bytes since the last blank line (the end of an event)."""
        if piece.endswith(b"\n\n") or piece.endswith(b"\n\r\n"):  # the usual case: whole events
            self._pending = 0
        else:
            lf, crlf = piece.rfind(b"\n\n"), piece.rfind(b"\n\r\n")
            if lf >= 0 or crlf >= 0:
                self._pending = len(piece) - max(lf + 2, crlf + 3)
            else:  # no blank line inside: maybe one split across the previous piece and this one
                window = self._tail + piece[:2]
                lf, crlf = window.rfind(b"\n\n"), window.rfind(b"\n\r\n")
                end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0) - len(self._tail)
                self._pending = len(piece) - end if end > 0 else self._pending + len(piece)
            limit = self._limits.event_bytes
            if self._pending > limit:
                raise self._fail(f"upstream server-sent event larger than {size_text(limit)} without an end")
        self._tail = piece[-2:]

    def _fail(self, message: str) -> UpstreamConnectionError:
        error = UpstreamConnectionError(message)
        self._conn.abort(error)
        return error

    async def read(self) -> bytes:
        """The whole decoded body, at most Limits.body_bytes (else UpstreamConnectionError)."""
        parser, conn = self._parser, self._conn
        limit = self._limits.body_bytes
        if parser.limit > limit:
            try:
                parser.cap(limit)  # an event stream read whole is bounded like any answer
            except UpstreamConnectionError as exc:
                conn.abort(exc)
                raise
        while not parser.done:
            if conn.error is not None:
                raise conn.error
            await conn._wait()
        data = b"".join(parser.body)
        parser.body.clear()
        self.release()
        decoder = self._decoder
        if decoder is None or not data:
            return data
        decoded = decoder.decompress(data, limit + 1)  # a gzip bomb stops one byte past the limit
        if len(decoded) > limit:
            raise UpstreamConnectionError(f"decoded upstream answer larger than {size_text(limit)}")
        if not decoder.eof:
            raise UpstreamConnectionError("compressed upstream answer cut short")
        return decoded

    def release(self) -> None:
        """Give the connection back when the answer was read to its end; otherwise close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.disarm()
        parser = self._parser
        reusable = parser.done and not conn.closed and conn.error is None and parser.framing != "eof" \
            and not parser.close_after
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
    """Keep-alive connections to one origin (scheme://host:port), at most `limit` at a time; each
    answer bounded by `limits`."""

    def __init__(self, origin: str, limit: int = 200, ssl_context: ssl.SSLContext | None = None,
                 limits: Limits = Limits()) -> None:
        self.limits = limits
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

    async def post(self, target: str, body: bytes, headers: bytes, deadline: float | None = None, method: str = "POST") -> Response:
        """POST `body` to path+query `target`; `headers` are ready-made "Name: value\\r\\n" lines.
        Returns once the status line and headers arrived. With a `deadline` (loop time), waiting
        for a connection, the headers or the body (Response.read) past it raises UpstreamTimeout.
        Without one (a stream, bounded between reads by its caller), the whole answer is bounded
        by Limits.stream_s from now, when set."""
        if not self._slots.try_take():  # the usual case takes a free slot: no timer, no await
            await _by_deadline(self._slots.take(), deadline, "no connection to the upstream came free within the timeout")
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n").encode() + headers + b"\r\n"
        for attempt in (0, 1):
            conn = self._get_idle()
            if conn is None:
                try:
                    conn = await _by_deadline(self._connect(), deadline, f"cannot connect to {self.host}:{self.port} within the timeout")
                except BaseException:
                    self._slots.release()
                    raise
            limits = self.limits
            parser = conn.parser = Parser(limits.body_bytes, limits.stream_bytes)
            conn.error = None
            if deadline is not None:
                conn.arm(deadline)
            elif limits.stream_s is not None:
                conn.arm(conn.loop.time() + limits.stream_s, f"the upstream answer went on past {limits.stream_s:g} s (TALLY_MAX_STREAM_S)")
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
                if attempt == 0 and reused and not parser.seen:
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
            return Response(conn, parser, limits)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closing = True
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing
