"""The spend routes, the daily activity routes and the Usage UI live in the reports service; the
proxy forwards them so every curl of LiteLLM's docs works against :4000. Method, path, query, body,
auth and status are kept."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from services.proxy.errors import UpstreamError

# Request headers worth passing on; hop-by-hop headers and Host are not.
FORWARDED_REQUEST_HEADERS = ("Authorization", "api-key", "x-litellm-api-key", "Content-Type", "Accept", "Cookie")
DROPPED_RESPONSE_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive", "content-length", "content-encoding", "server", "date"})

REPORTS_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("reports_session", aiohttp.ClientSession)
REPORTS_URL: web.AppKey[str] = web.AppKey("reports_url", str)


async def forward_to_reports(request: web.Request) -> web.StreamResponse:
    session = request.app[REPORTS_SESSION]
    url = request.app[REPORTS_URL] + request.rel_url.path_qs
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    body = await request.read() if request.can_read_body else None
    try:
        async with session.request(request.method, url, data=body, headers=headers, allow_redirects=False) as upstream:
            payload = await upstream.read()
            out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS)
            return web.Response(body=payload, status=upstream.status, headers=out)
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"the reports service at {request.app[REPORTS_URL]} is unreachable: {type(exc).__name__}", 503, type="service_unavailable") from exc


def add_report_routes(app: web.Application) -> None:
    for pattern in ("/spend/{tail:.*}", "/global/spend", "/global/spend/{tail:.*}", "/ui", "/ui/{tail:.*}",
                    "/user/daily/activity", "/team/daily/activity", "/tag/daily/activity"):
        app.router.add_route("*", pattern, forward_to_reports)
