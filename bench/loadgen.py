"""The proxy benchmark's load generator: keep-alive HTTP/1.1 connections that send one ready-made
request at a time and wait for the whole answer, doing as little as a client can (what wrk does in
C), so that on a shared 2-core machine the CPU goes to what is measured.

An answer is complete when its Content-Length bytes arrived, or for a chunked answer when the
terminating zero chunk did. Only a 200 counts; anything else stops the benchmark."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

_CHUNKED_END = b"\r\n0\r\n\r\n"


class LoadError(RuntimeError):
    pass


def content_length(head: bytes, default: int) -> int:
    """The Content-Length of an HTTP/1.1 message head, or `default` when it has none."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return default


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.head = b""  # the answer's bytes until its head is complete
        self.remaining = -1  # body bytes still due (Content-Length), or -1 when chunked
        self.tail = b""  # the last bytes of a chunked body
        self.in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> asyncio.Future[None]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.head, self.tail, self.in_body = b"", b"", False
        self.transport.write(request)  # type: ignore[union-attr]
        return self.waiter

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4:]
            if not head.startswith(b"HTTP/1.1 200"):
                self._fail(LoadError(f"answered {head[:60]!r}: {data[:200]!r}"))
                return
            self.in_body = True
            self.remaining = content_length(head, default=-1)
        if self.remaining >= 0:
            self.remaining -= len(data)
            done = self.remaining <= 0
        else:
            self.tail = (self.tail + data)[-len(_CHUNKED_END):]
            done = self.tail == _CHUNKED_END
        if done and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LoadError(f"connection lost: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class LoadTarget:
    """POSTs of one body to one URL, over as many keep-alive connections as callers."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._idle: list[_Client] = []
        self._all: list[_Client] = []

    async def call(self) -> None:
        client = self._idle.pop() if self._idle else await self._connect()
        await client.send(self.request)
        self._idle.append(client)

    async def _connect(self) -> _Client:
        _, client = await asyncio.get_running_loop().create_connection(_Client, self.host, self.port)
        self._all.append(client)
        return client

    def close(self) -> None:
        for client in self._all:
            if client.transport is not None:
                client.transport.close()


async def run_for(target: LoadTarget, seconds: float, concurrency: int, limit: int | None = None) -> tuple[int, float]:
    """`concurrency` callers back to back for `seconds` (or until `limit` calls): (calls, seconds)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline and (limit is None or done < limit):
            await target.call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done, time.perf_counter() - start
