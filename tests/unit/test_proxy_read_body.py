"""The relay reads a request body that has fully arrived without aiohttp's read loop, with the same limit."""

import asyncio
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from services.proxy.calls.relay import read_body

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


def request_with(pieces: list[bytes], eof: bool, client_max_size: int = 1024) -> web.Request:
    protocol = mock.Mock(_reading_paused=False)
    payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for piece in pieces:
        payload.feed_data(piece)
    if eof:
        payload.feed_eof()
    return make_mocked_request("POST", "/v1/chat/completions", payload=payload, client_max_size=client_max_size)


async def test_a_body_that_has_arrived_is_read_whole():
    """Several pieces, all in: one bytes object with all of them."""
    assert await read_body(request_with([BODY[:10], BODY[10:]], eof=True)) == BODY


async def test_a_body_still_arriving_is_awaited():
    """Not all in yet: falls back to request.read(), which waits for the rest."""
    request = request_with([BODY[:10]], eof=False)
    reading = asyncio.ensure_future(read_body(request))
    await asyncio.sleep(0)
    assert not reading.done()
    request.content.feed_data(BODY[10:])
    request.content.feed_eof()
    assert await reading == BODY


@pytest.mark.parametrize("eof", [True, False])
async def test_a_body_over_the_limit_is_413_either_way(eof):
    """Over client_max_size: 413, whether the body had all arrived or not."""
    request = request_with([BODY], eof=eof, client_max_size=len(BODY) - 1)
    if not eof:
        request.content.feed_eof()
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        await read_body(request)


async def test_exactly_the_limit_is_accepted():
    """client_max_size itself is allowed, as aiohttp allows it."""
    assert await read_body(request_with([BODY], eof=True, client_max_size=len(BODY))) == BODY
