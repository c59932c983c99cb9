"""The proxy checks the caller before it reads a forwarded spend-route body: no key or a bad key is
a 401 answered before the body is sent and nothing reaches the reports service; a valid key is
forwarded, bodies over 1 MiB are a 413, large answers are streamed through (services/proxy/transport/reports_forward.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.proxy.transport.reports_forward import MAX_FORWARDED_BODY
from shared import topics
from shared.events import EntityChanged, encode
from shared.kafka import idempotent_producer
from shared.keys import hash_key
from shared.settings import CommonSettings
from tests.integration.test_proxy_relay import (  # noqa: F401 - fixtures
    MASTER, ProxyFactory, base_url, kafka, start_proxy, start_server, upstream,
)

pytestmark = pytest.mark.integration

TEN_MB = 10_000_000
NO_KEY = "Authentication Error, No api key passed in. Send it as 'Authorization: Bearer <key>' or an 'api-key' header."
BAD_KEY = "Authentication Error, Invalid proxy server token passed. Unable to find token in cache."
TOO_LARGE = f"Request body is larger than {MAX_FORWARDED_BODY} bytes, the limit of the spend routes"
BIG_ANSWER = bytes(range(256)) * 12_000  # 3,072,000 bytes: over the size passed in one piece


@dataclass
class FakeReports:
    """Echoes what it was sent and counts every request it saw."""

    server: TestServer | None = None
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, body size

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path, len(body)))
        if request.path == "/global/spend/big":
            response = web.StreamResponse(status=200, headers={"Content-Type": "text/csv"})
            await response.prepare(request)  # chunked: no Content-Length
            for start in range(0, len(BIG_ANSWER), 100_000):
                await response.write(BIG_ANSWER[start:start + 100_000])
            await response.write_eof()
            return response
        return web.json_response({"path": request.path, "auth": request.headers.get("Authorization"), "size": len(body)})


@pytest.fixture
async def reports() -> AsyncIterator[FakeReports]:
    fake = FakeReports()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    fake.server = await start_server(app)
    yield fake
    await fake.server.close()


@pytest.fixture
async def proxy_url(start_proxy: ProxyFactory, reports: FakeReports) -> str:
    assert reports.server is not None
    return base_url(await start_proxy(reports_url=base_url(reports.server)))


async def head_only(proxy_url: str, headers: str, sent_body: bytes = b"{" + b" " * 1023) -> tuple[bytes, dict[str, str], bytes]:
    """Sends a request head announcing 10 MB and only the first KiB of its body, then reads the
    answer: it can only arrive if the proxy answered without waiting for the rest."""
    host, port = proxy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST /spend/calculate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {TEN_MB}\r\n{headers}\r\n".encode() + sent_body)
        await writer.drain()
        async with asyncio.timeout(10):
            status = await reader.readline()
            fields: dict[str, str] = {}
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                fields[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(fields["content-length"]))
        return status, fields, body
    finally:
        writer.close()


def error_of(body: bytes) -> dict[str, str]:
    return orjson.loads(body)["error"]


async def test_no_key_is_401_before_the_body_is_sent(proxy_url: str, reports: FakeReports) -> None:
    """With only 1 KiB of an announced 10 MB sent and no key, the 401 arrives; reports saw nothing."""
    status, _, body = await head_only(proxy_url, "")
    assert status == b"HTTP/1.1 401 Unauthorized\r\n"
    assert error_of(body) == {"message": NO_KEY, "type": "auth_error", "param": None, "code": "401"}
    assert reports.seen == []


async def test_bad_key_is_401_before_the_body_is_sent(proxy_url: str, reports: FakeReports) -> None:
    """An unknown key gets LiteLLM's invalid-token 401 without the body being read or forwarded."""
    status, _, body = await head_only(proxy_url, "Authorization: Bearer sk-never-issued-000000\r\n")
    assert status == b"HTTP/1.1 401 Unauthorized\r\n"
    assert error_of(body) == {"message": BAD_KEY, "type": "auth_error", "param": None, "code": "401"}
    assert reports.seen == []


async def test_no_key_with_expect_continue_is_refused_instead_of_continue(proxy_url: str, reports: FakeReports) -> None:
    """A client waiting for `100 Continue` without a key gets the 401 first and never sends its body."""
    status, fields, body = await head_only(proxy_url, "Expect: 100-continue\r\n", sent_body=b"")
    assert status == b"HTTP/1.1 401 Unauthorized\r\n"
    assert fields["connection"] == "close"
    assert error_of(body)["message"] == NO_KEY
    assert reports.seen == []


async def test_master_key_announcing_ten_mb_is_413_before_the_body(proxy_url: str, reports: FakeReports) -> None:
    """An authenticated body over the 1 MiB limit is refused from its Content-Length alone."""
    status, _, body = await head_only(proxy_url, f"Authorization: Bearer {MASTER}\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large\r\n"
    assert error_of(body) == {"message": TOO_LARGE, "type": "invalid_request_error", "param": None, "code": "413"}
    assert reports.seen == []


async def test_unauthenticated_ten_mb_upload_is_401_and_not_forwarded(proxy_url: str, reports: FakeReports) -> None:
    """A client that sends all 10 MB without a key still gets the 401, and reports gets no request."""
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy_url + "/spend/calculate", data=b"x" * TEN_MB) as response:
            assert response.status == 401
            assert (await response.json())["error"]["message"] == NO_KEY
    assert reports.seen == []


async def test_chunked_body_over_the_limit_is_413(proxy_url: str, reports: FakeReports) -> None:
    """A body without Content-Length is read only up to the limit, then refused."""
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * MAX_FORWARDED_BODY

    async with aiohttp.ClientSession() as http:
        async with http.post(proxy_url + "/spend/calculate", data=chunks(), headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 413
            assert (await response.json())["error"]["message"] == TOO_LARGE
    assert reports.seen == []


async def test_master_key_body_at_the_limit_is_forwarded(proxy_url: str, reports: FakeReports) -> None:
    """A body of exactly 1 MiB with the master key reaches the reports service whole."""
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy_url + "/spend/calculate", data=b"x" * MAX_FORWARDED_BODY,
                             headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 200
            assert await response.json() == {"path": "/spend/calculate", "auth": f"Bearer {MASTER}", "size": MAX_FORWARDED_BODY}
    assert reports.seen == [("POST", "/spend/calculate", MAX_FORWARDED_BODY)]


async def test_a_key_created_a_moment_ago_is_forwarded(proxy_url: str, reports: FakeReports, kafka: CommonSettings) -> None:
    """A virtual key published after the proxy started is caught up with, not refused."""
    raw_key = "sk-forwarded-0001-abcdefghij"
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        change = EntityChanged(entity_type="key", entity_id=hash_key(raw_key), state={"token": hash_key(raw_key)})
        await producer.send_and_wait(kafka.topic(topics.ENTITIES), encode(change), key=f"key:{change.entity_id}".encode())
    finally:
        await producer.stop()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy_url + "/spend/logs?summarize=false", headers={"Authorization": f"Bearer {raw_key}"}) as response:
            assert response.status == 200
            assert (await response.json())["auth"] == f"Bearer {raw_key}"
    assert reports.seen == [("GET", "/spend/logs", 0)]


async def test_usage_page_files_need_no_key(proxy_url: str, reports: FakeReports) -> None:
    """GET /ui and its assets are forwarded without a key; the page asks for one itself."""
    async with aiohttp.ClientSession() as http:
        for path in ("/ui", "/ui/assets/usage.js"):
            async with http.get(proxy_url + path) as response:
                assert response.status == 200
        async with http.post(proxy_url + "/ui") as response:
            assert response.status == 401
    assert reports.seen == [("GET", "/ui", 0), ("GET", "/ui/assets/usage.js", 0)]


async def test_a_large_answer_is_streamed_through_whole(proxy_url: str, reports: FakeReports) -> None:
    """A 3 MB unsized answer reaches the client byte for byte, in pieces."""
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy_url + "/global/spend/big", headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/csv"
            assert await response.read() == BIG_ANSWER
