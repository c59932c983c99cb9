"""The Usage page: plain HTML, CSS and JS from static/, plus the vendored chart library when
stack/vendor_ui.sh has fetched it (the page falls back to tables without it)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.reports.state import SETTINGS
from shared.errors import NotFound


async def usage_page(request: web.Request) -> web.FileResponse:
    response = web.FileResponse(request.app[SETTINGS].static_dir / "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


async def to_ui(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


async def asset(request: web.Request) -> web.FileResponse:
    """A file under static/ (the page's CSS and JS, the vendored chart library). A missing one is a
    404 in OpenAI's error shape, decided here: aiohttp's static route answered an empty 404 that
    its own request log counted as 200."""
    root = Path(request.app[SETTINGS].static_dir).resolve()
    path = (root / request.match_info["filename"]).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFound(f"no such asset: {request.match_info['filename']}")
    return web.FileResponse(path)
