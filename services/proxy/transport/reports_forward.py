"""The spend routes, the daily activity routes and the Usage UI live in the reports service; the
proxy forwards them so every curl of LiteLLM's docs works against :4000. Method, path, query, body,
auth and status are kept.

The proxy checks the caller before it reads a forwarded body (docs/security.md): without the
master key or a valid virtual key the answer is a 401 and the body is never buffered nor sent on,
and an `Expect: 100-continue` request is refused before the client sends it. The reports service
then decides what the key may read. Spend routes take small JSON bodies: over
`MAX_FORWARDED_BODY` the answer is a 413. Only the Usage page's own files (GET /ui...) need no
key: the page asks for one itself."""

from __future__ import annotations

import aiohttp
import structlog
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict

from services.proxy.auth.keys import KEY_CATCH_UP_S, Authenticator, authenticate_with_catch_up
from services.proxy.errors import ProxyError, UpstreamError
from services.proxy.sync.key_sync import KEY_SYNC
from shared.errors import error_response

log = structlog.get_logger(__name__)

# Request headers worth passing on; hop-by-hop headers and Host are not.
FORWARDED_REQUEST_HEADERS = ("Authorization", "api-key", "x-litellm-api-key", "Content-Type", "Accept", "Cookie")
DROPPED_RESPONSE_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive", "content-length", "content-encoding", "server", "date"})
MAX_FORWARDED_BODY = 1024 * 1024  # the reports service's own limit (aiohttp's default client_max_size)
WHOLE_ANSWER_MAX = 1024 * 1024  # answers up to this size are passed in one piece, larger ones streamed
STREAM_CHUNK = 64 * 1024
PUBLIC_PREFIX = "/ui"  # the Usage page's HTML, CSS and JS

REPORTS_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("reports_session", aiohttp.ClientSession)
REPORTS_URL: web.AppKey[str] = web.AppKey("reports_url", str)
FORWARD_AUTH: web.AppKey[Authenticator] = web.AppKey("forward_auth", Authenticator)


class BodyTooLarge(ProxyError):
    status = 413

    def __init__(self) -> None:
        super().__init__(f"Request body is larger than {MAX_FORWARDED_BODY} bytes, the limit of the spend routes",
                         code="413")


def is_public(request: web.Request) -> bool:
    path = request.path
    return request.method in (hdrs.METH_GET, hdrs.METH_HEAD) and (path == PUBLIC_PREFIX or path.startswith(PUBLIC_PREFIX + "/"))


async def check_caller(request: web.Request) -> None:
    """Raises AuthError (401) unless the request carries the master key or a valid virtual key (a
    refused key is asked again once the key table has read the entities topic, as relay.py does),
    and BodyTooLarge (413) when the announced body is over the limit."""
    if is_public(request):
        return
    app = request.app
    await authenticate_with_catch_up(app[FORWARD_AUTH], request.headers, app.get(KEY_SYNC), KEY_CATCH_UP_S)
    length = request.content_length
    if length is not None and length > MAX_FORWARDED_BODY:
        raise BodyTooLarge()


async def refuse_before_continue(request: web.Request) -> web.StreamResponse | None:
    """The route's Expect handler: a client that waits for `100 Continue` gets the 401 or 413
    instead, and never sends the body. (Its answer skips the middlewares: shaped here.)"""
    try:
        await check_caller(request)
    except ProxyError as exc:
        response = error_response(exc.message, exc.status, type=exc.type, code=exc.code, param=exc.param)
        response.force_close()  # the body the client may still send is not wanted
        return response
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11:
        if expect.lower() != "100-continue":
            return error_response(f"Unknown Expect: {expect[:100]}", 417)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the 100 is not part of the answer's size
    return None


async def bounded_body(request: web.Request) -> bytes | None:
    """The body, read only up to MAX_FORWARDED_BODY (413 beyond: chunked bodies have no length)."""
    if not request.body_exists:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_FORWARDED_BODY:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def forward_to_reports(request: web.Request) -> web.StreamResponse:
    await check_caller(request)
    body = await bounded_body(request)
    session = request.app[REPORTS_SESSION]
    url = request.app[REPORTS_URL] + request.rel_url.path_qs
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    try:
        async with session.request(request.method, url, data=body, headers=headers, allow_redirects=False) as upstream:
            out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS)
            length = upstream.content_length
            if length is not None and length <= WHOLE_ANSWER_MAX:
                return web.Response(body=await upstream.read(), status=upstream.status, headers=out)
            return await stream_answer(request, upstream, out)
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"the reports service at {request.app[REPORTS_URL]} is unreachable: {type(exc).__name__}", 503, type="service_unavailable") from exc


async def stream_answer(request: web.Request, upstream: aiohttp.ClientResponse, headers: CIMultiDict[str]) -> web.StreamResponse:
    """A large (or unsized) answer, passed on as it arrives: memory stays at one chunk. A failure
    after the head is sent can only cut the connection, so the client sees the answer is short."""
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
            await response.write(chunk)
    except (aiohttp.ClientError, ConnectionError) as exc:
        log.warning("reports_answer_cut", path=request.path, error=f"{type(exc).__name__}: {exc}")
        if request.transport is not None:
            request.transport.close()  # no end-of-body marker: the client must see the answer is incomplete
        return response
    await response.write_eof()
    return response


def add_report_routes(app: web.Application, auth: Authenticator) -> None:
    """`auth` is the LLM routes' authenticator and the catch-up is the same key sync (app[KEY_SYNC]),
    so callers are judged alike."""
    app[FORWARD_AUTH] = auth
    for pattern in ("/spend/{tail:.*}", "/global/spend", "/global/spend/{tail:.*}", "/ui", "/ui/{tail:.*}",
                    "/user/daily/activity", "/team/daily/activity", "/tag/daily/activity"):
        app.router.add_route("*", pattern, forward_to_reports, expect_handler=refuse_before_continue)
