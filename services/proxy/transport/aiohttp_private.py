"""Every use the proxy makes of aiohttp's private attributes, in one place.

The fast path (fast_routes.py, answer.py, calls/streaming.py) skips work aiohttp does per request
by reading or writing attributes aiohttp does not publish. Each use is one small named function
or class here, with the reason it exists; pyproject.toml pins aiohttp to the minor versions these
were checked against, and tests/unit/test_aiohttp_private.py fails, naming the attribute, when an
upgrade removes or changes one of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute, UrlMappingMatchInfo

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What each name below touches, for the test that checks them against the installed aiohttp.
PRIVATE_ATTRIBUTES = (
    (web.Application, "_handle"),
    (web.Request, "_match_info"),
    (web.StreamResponse, "_eof_sent"),
    (web.StreamResponse, "_keep_alive"),
    (web.StreamResponse, "_body_length"),
    (web.StreamResponse, "_send_headers_immediately"),
)


def app_handler(app: web.Application) -> Handler:
    """The Application's own per-request entry point (router walk, match info, middlewares): the
    fast routes fall back to it for every request they do not serve themselves."""
    return app._handle


def replace_app_handler(app: web.Application, handler: Handler) -> None:
    """aiohttp builds its server from `app._handle` right after on_startup: putting the fast
    routes' handler there is the only way to reach requests before the router does."""
    app._handle = handler  # type: ignore[method-assign]


def frozen_match_info(route: AbstractRoute, app: web.Application) -> UrlMappingMatchInfo:
    """A variable-free route's match info, built once and shared by every request on it (what
    the router builds per request; the class is public, building it by hand is not)."""
    match_info = UrlMappingMatchInfo({}, route)
    match_info.add_app(app)
    match_info.freeze()
    return match_info


def set_match_info(request: web.Request, match_info: UrlMappingMatchInfo) -> None:
    """What the Application's `_handle` does before calling the handler: request.match_info
    (route, app, and the current_app the middlewares see) reads it."""
    request._match_info = match_info


def already_sent(response: web.StreamResponse) -> bool:
    """The response's end is written: a second prepare must write nothing."""
    return response._eof_sent


def mark_sent_whole(response: web.StreamResponse, keep_alive: bool, body_length: int) -> None:
    """A response that wrote its head and body itself, in one write, leaves the state aiohttp's
    own write_eof leaves: the server reads keep_alive to keep or close the connection, the access
    log reads body_length, and a later write_eof does nothing."""
    response._keep_alive = keep_alive
    response._eof_sent = True
    response._body_length = body_length


class CoalescingStreamResponse(web.StreamResponse):
    """Sends its headers with the first body bytes, in one write (aiohttp's Response does this;
    StreamResponse writes them alone). Used only when those bytes are already at hand."""

    _send_headers_immediately = False
