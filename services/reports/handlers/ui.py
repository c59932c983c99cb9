"""The Usage page: plain HTML, CSS and JS from static/, plus the vendored chart library when
stack/vendor_ui.sh has fetched it (the page falls back to tables without it)."""

from __future__ import annotations

from aiohttp import web

from services.reports.state import SETTINGS


async def usage_page(request: web.Request) -> web.FileResponse:
    response = web.FileResponse(request.app[SETTINGS].static_dir / "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


async def to_ui(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")
