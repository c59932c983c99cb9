"""The LLM routes reach their handler without aiohttp's per-request dispatch.

`web.Application._handle` does, per request: `asyncio.get_event_loop()` (a getpid(2) on Python
3.11), a router walk, a new match-info object filled and frozen, a look-up of the middleware
chain, and the `_fix_request_current_app` middleware around the handler: ~10 µs of CPU, for a
choice that for `POST /v1/chat/completions` is always the same. `FastRoutes` keeps, per plain
(variable-free) POST path, the route's handler already wrapped in the app's middlewares and one
frozen match info, and serves a request whose raw target is exactly that path from them. Anything
else — another method or path, a query string, a `{variable}` route, an `Expect` header — goes to
the Application's own `_handle`, so 404s, 405s and every other route keep aiohttp's handling and
OpenAI-shaped errors. tests/unit/test_proxy_dispatch.py proves the table matches the router's
answer for each path. The aiohttp internals it needs are in aiohttp_private.py."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial, update_wrapper

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import PlainResource, UrlMappingMatchInfo

from services.proxy.transport.aiohttp_private import (
    Handler,
    app_handler,
    frozen_match_info,
    replace_app_handler,
    set_match_info,
)


class FastRoutes:
    """`paths`: POST paths served directly (each must be a plain route of `app`)."""

    def __init__(self, app: web.Application, paths: Iterable[str]) -> None:
        self.app = app
        self.general: Handler = app_handler(app)
        self.table: dict[str, tuple[Handler, UrlMappingMatchInfo]] = {}
        wanted = set(paths)
        for route in app.router.routes():
            resource = route.resource
            path = resource.canonical if isinstance(resource, PlainResource) else None
            if route.method != hdrs.METH_POST or path not in wanted or path in self.table:
                continue
            self.table[path] = (self._chain(route.handler), frozen_match_info(route, app))
        missing = wanted - self.table.keys()
        if missing:
            raise ValueError(f"no plain POST route for {sorted(missing)}")

    def _chain(self, handler: Handler) -> Handler:
        """The handler inside the app's middlewares, as `_handle` would build it (the innermost
        one, `_fix_request_current_app`, has nothing to do: the match info's app is this app)."""
        for middleware in reversed(self.app.middlewares):
            if getattr(middleware, "__middleware_version__", None) != 1:
                raise ValueError(f"old-style middleware {middleware!r} is not supported here")
            handler = update_wrapper(partial(middleware, handler=handler), handler)
        return handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == hdrs.METH_POST:
            entry = self.table.get(request.raw_path)
            if entry is not None and hdrs.EXPECT not in request.headers:
                handler, match_info = entry
                set_match_info(request, match_info)
                return await handler(request)
        return await self.general(request)


def install_fast_routes(app: web.Application, paths: Iterable[str]) -> None:
    """Serve `paths` through FastRoutes from now on. Run from on_startup: every route and
    middleware is in place, and aiohttp builds its server from `app._handle` right after."""
    replace_app_handler(app, FastRoutes(app, paths).handle)
