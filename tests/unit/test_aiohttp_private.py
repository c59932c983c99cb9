"""The aiohttp internals the proxy's fast path uses (services/proxy/transport/aiohttp_private.py)
are still there, of the expected kind, and still do what the proxy relies on: an aiohttp upgrade
that changes one fails here, naming it."""

from __future__ import annotations

import inspect

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.proxy.transport.aiohttp_private import (
    PRIVATE_ATTRIBUTES,
    CoalescingStreamResponse,
    already_sent,
    app_handler,
    frozen_match_info,
    mark_sent_whole,
    replace_app_handler,
    set_match_info,
)

# (class, attribute) -> what it must be: a check on the value aiohttp's class holds.
EXPECTED = {
    (web.Application, "_handle"): ("a coroutine function", inspect.iscoroutinefunction),
    (web.Request, "_match_info"): ("None by default, and settable on a Request (in Request.ATTRS)",
                                   lambda value: value is None and "_match_info" in web.Request.ATTRS),
    (web.StreamResponse, "_eof_sent"): ("False by default", lambda value: value is False),
    (web.StreamResponse, "_keep_alive"): ("None by default", lambda value: value is None),
    (web.StreamResponse, "_body_length"): ("0 by default", lambda value: value == 0 and isinstance(value, int)),
    (web.StreamResponse, "_send_headers_immediately"): (
        "True by default (False on web.Response)", lambda value: value is True and web.Response._send_headers_immediately is False),
}


def test_every_private_use_is_checked_here():
    """The module's list of private attributes is exactly the one this test checks."""
    assert set(PRIVATE_ATTRIBUTES) == set(EXPECTED)


@pytest.mark.parametrize(("cls", "name"), PRIVATE_ATTRIBUTES, ids=[f"{c.__name__}.{n}" for c, n in PRIVATE_ATTRIBUTES])
def test_the_private_attribute_is_there_and_of_the_expected_kind(cls, name):
    """Each private attribute the proxy reads or writes exists on aiohttp's class with the expected kind."""
    assert hasattr(cls, name), (
        f"aiohttp {aiohttp.__version__} has no {cls.__name__}.{name}: services/proxy/transport/aiohttp_private.py "
        f"relies on it; adapt that module before upgrading aiohttp")
    kind, check = EXPECTED[(cls, name)]
    value = getattr(cls, name)
    assert check(value), (
        f"aiohttp {aiohttp.__version__}: {cls.__name__}.{name} is {value!r}, no longer {kind}: "
        f"services/proxy/transport/aiohttp_private.py relies on it")


async def _serve(app: web.Application, *requests: tuple[str, str, dict[str, str]]) -> list[tuple[int, bytes]]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            answers = []
            for method, path, headers in requests:
                async with session.request(method, server.make_url(path), headers=headers) as response:
                    answers.append((response.status, await response.read()))
            return answers
    finally:
        await server.close()


async def test_a_replaced_app_handler_serves_requests_with_a_frozen_match_info():
    """app_handler, replace_app_handler, frozen_match_info and set_match_info: a request reaches its handler
    without the router, with request.match_info and request.app as the router would set them; others fall back."""
    seen: list[tuple[str, str, bool]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(("route", request.match_info.route.resource.canonical, request.app is app))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/x", handler)

    async def install(app: web.Application) -> None:
        general = app_handler(app)
        route = next(r for r in app.router.routes() if r.method == "POST")
        match_info = frozen_match_info(route, app)

        async def fast(request: web.Request) -> web.StreamResponse:
            if request.path == "/x":
                seen.append(("fast", request.path, True))
                set_match_info(request, match_info)
                return await route.handler(request)
            return await general(request)

        replace_app_handler(app, fast)

    app.on_startup.append(install)
    answers = await _serve(app, ("POST", "/x", {}), ("POST", "/nothing", {}))
    assert answers == [(200, b"ok"), (404, b"404: Not Found")]
    assert seen == [("fast", "/x", True), ("route", "/x", True)]


class _WholeAnswer(web.StreamResponse):
    """Writes status, headers and body itself in one write, as the proxy's Answer does."""

    def __init__(self, body: bytes, sink: list[web.StreamResponse]) -> None:
        super().__init__()
        self.body_bytes = body
        sink.append(self)

    async def prepare(self, request: web.BaseRequest):
        if already_sent(self):
            return None
        keep_alive = request.keep_alive
        connection = "" if keep_alive else "Connection: close\r\n"
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body_bytes)}\r\n{connection}\r\n"
        mark_sent_whole(self, keep_alive, len(self.body_bytes))
        await request.writer.write_eof(head.encode() + self.body_bytes)
        return None


async def test_a_response_marked_sent_whole_is_finished_and_keeps_or_closes_its_connection():
    """already_sent and mark_sent_whole: aiohttp sees the hand-written response as finished (no second write),
    with its body length, and keeps the connection open or closes it as the response says."""
    responses: list[web.StreamResponse] = []
    peers: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return _WholeAnswer(b'{"ok":true}', responses)

    app = web.Application()
    app.router.add_get("/whole", handler)
    answers = await _serve(app, ("GET", "/whole", {}), ("GET", "/whole", {}),
                           ("GET", "/whole", {"Connection": "close"}), ("GET", "/whole", {}))
    assert answers == [(200, b'{"ok":true}')] * 4
    assert [(r.prepared, r.keep_alive, r.body_length) for r in responses] == [
        (True, True, 11), (True, True, 11), (True, False, 11), (True, True, 11)]
    assert peers[0] == peers[1] == peers[2]  # kept alive: one connection for the first three
    assert peers[3] != peers[2]  # closed after the Connection: close answer


async def test_a_coalescing_stream_response_sends_its_headers_with_the_first_bytes():
    """CoalescingStreamResponse: nothing is written at prepare; the head leaves with the first body bytes
    (a plain StreamResponse writes its head at prepare)."""
    sizes: dict[str, tuple[int, int]] = {}

    def streamer(cls: type[web.StreamResponse]):
        async def handler(request: web.Request) -> web.StreamResponse:
            response = cls(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            after_prepare = request.writer.output_size
            await response.write(b"data: 1\n\n")
            sizes[cls.__name__] = (after_prepare, request.writer.output_size)
            await response.write_eof()
            return response
        return handler

    app = web.Application()
    app.router.add_get("/coalescing", streamer(CoalescingStreamResponse))
    app.router.add_get("/plain", streamer(web.StreamResponse))
    answers = await _serve(app, ("GET", "/coalescing", {}), ("GET", "/plain", {}))
    assert answers == [(200, b"data: 1\n\n")] * 2
    coalesced_before, coalesced_after = sizes["CoalescingStreamResponse"]
    plain_before, plain_after = sizes["StreamResponse"]
    assert coalesced_before == 0, "CoalescingStreamResponse wrote its head at prepare: _send_headers_immediately is ignored"
    assert plain_before > 0
    assert coalesced_after > len(b"data: 1\n\n") and plain_after > plain_before
