"""The hostile upstream itself (no stack): well-behaved, it speaks OpenAI's wire protocol exactly;
hostile, it writes exactly the malformed bytes its mode names. The suite's verdicts rest on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.fixtures import hostile_upstream as hostile
from tests.fixtures.stack import free_port

pytestmark = pytest.mark.adversarial


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    port = free_port()
    server = await asyncio.start_server(hostile.handle, "127.0.0.1", port)
    async with server:
        yield f"127.0.0.1:{port}"


async def raw(address: str, body: dict) -> bytes:
    """POST `body` to /v1/chat/completions and return every byte until the server closes."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = orjson.dumps(body)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    out = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    return out


async def test_plain_answer_is_openai_shaped(upstream: str):
    """`ok`: a chat.completion with usage 10 + 20 = 30, over a reused keep-alive connection."""
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(f"http://{upstream}/v1/chat/completions", json={"model": "ok", "messages": []}) as resp:
                data = await resp.json()
        assert (resp.status, data["object"], data["usage"]) == (200, "chat.completion",
                                                                {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30})


async def test_continuous_usage_stream_ends_with_the_total(upstream: str):
    """`continuous_usage`: usage on every chunk (2, 4, ... completion tokens), the last 100 + 40, then [DONE]."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{upstream}/v1/chat/completions",
                                json={"model": "continuous_usage", "stream": True}) as resp:
            text = await resp.read()
    events = [e for e in text.split(b"\n\n") if e]
    usages = [orjson.loads(e[6:])["usage"]["completion_tokens"] for e in events[:-1]]
    assert (resp.headers["Content-Type"], usages, events[-1]) == ("text/event-stream", [2, 4, 6, 8, 10, 40, 40], b"data: [DONE]")


async def test_negative_chunk_size_is_written(upstream: str):
    """`chunked_negative`: a chunked body whose second chunk-size line is -6."""
    out = await raw(upstream, {"model": "chunked_negative"})
    assert b"Transfer-Encoding: chunked\r\n" in out and b'\r\n8\r\n{"id": "\r\n-6\r\n' in out


async def test_conflicting_lengths_are_written(upstream: str):
    """`conflicting_length`: two Content-Length headers that differ by 4096."""
    out = await raw(upstream, {"model": "conflicting_length"})
    lengths = [int(line.split(b":")[1]) for line in out.split(b"\r\n\r\n")[0].split(b"\r\n") if line.startswith(b"Content-Length")]
    assert len(lengths) == 2 and lengths[1] - lengths[0] == 4096
