"""The LLM routes served without aiohttp's router answer exactly as through it; the rest falls back."""

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from services.proxy.app import LLM_PATHS
from services.proxy.transport.fast_routes import FastRoutes, install_fast_routes
from shared.errors import BadRequest, openai_errors

SEEN: list[tuple[str, str, object]] = []


async def llm(request: web.Request) -> web.Response:
    SEEN.append(("llm", request.match_info.route.resource.canonical, request.app))
    if request.headers.get("x-fail"):
        raise BadRequest("refused", param="model")
    return web.Response(text="llm")


async def other(request: web.Request) -> web.Response:
    SEEN.append(("other", request.path, request.app))
    return web.Response(text="other")


def make_app() -> web.Application:
    app = web.Application(middlewares=[openai_errors])
    app.router.add_get("/health/liveliness", other)
    for path in LLM_PATHS:
        app.router.add_post(path, llm)
    app.router.add_get("/v1/models", other)
    app.router.add_post("/openai/deployments/{model}/chat/completions", llm)

    async def install(app: web.Application) -> None:
        install_fast_routes(app, LLM_PATHS)
    app.on_startup.append(install)
    return app


@pytest.fixture
async def client():
    SEEN.clear()
    async with TestClient(TestServer(make_app())) as client:
        yield client


async def test_table_matches_the_router():
    """Each fast path maps to the very route (and handler) the router resolves it to."""
    app = make_app()
    fast = FastRoutes(app, LLM_PATHS)
    assert sorted(fast.table) == sorted(LLM_PATHS)
    for path, (_handler, match_info) in fast.table.items():
        resolved = await app.router.resolve(make_mocked_request("POST", path, app=app))
        assert resolved.route is match_info.route
        assert match_info.apps == (app,) and match_info.current_app is app and dict(match_info) == {}


def test_unknown_path_is_refused_at_start_up():
    """A path with no plain POST route stops start-up instead of silently going slow."""
    with pytest.raises(ValueError, match="/v1/nothing"):
        FastRoutes(make_app(), ["/v1/nothing"])


async def test_fast_path_runs_the_middlewares(client):
    """A fast-path handler's error still leaves in OpenAI's shape, with request.app and match_info set."""
    response = await client.post("/v1/chat/completions", json={}, headers={"x-fail": "1"})
    assert response.status == 400
    assert orjson.loads(await response.read()) == {
        "error": {"message": "refused", "type": "invalid_request_error", "param": "model", "code": "400"}}
    assert SEEN == [("llm", "/v1/chat/completions", client.server.app)]
    assert isinstance(client.server.app._handle.__self__, FastRoutes)  # it was the fast path


@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/v1/chat/completions", 405, "Method GET not allowed on /v1/chat/completions"),
    ("POST", "/v1/nothing/here", 404, "Route not found: POST /v1/nothing/here"),
    ("POST", "/v1/chat/completions/", 404, "Route not found: POST /v1/chat/completions/"),
])
async def test_other_requests_keep_aiohttp_handling(client, method, path, status, message):
    """Unknown routes and wrong methods still get aiohttp's 404/405, in OpenAI's shape."""
    response = await client.request(method, path)
    assert response.status == status
    assert orjson.loads(await response.read())["error"]["message"] == message


@pytest.mark.parametrize("path", ["/v1/chat/completions?x=1", "/openai/deployments/gpt/chat/completions"])
async def test_query_and_variable_routes_fall_back(client, path):
    """A target with a query string or a {variable} route still reaches its handler through the router."""
    response = await client.post(path, json={})
    assert response.status == 200 and await response.text() == "llm"


async def test_expect_header_falls_back(client):
    """`Expect: 100-continue` goes through aiohttp's expect handler."""
    response = await client.post("/v1/embeddings", data=b"{}", headers={"Expect": "100-continue"})
    assert response.status == 200 and await response.text() == "llm"


async def test_get_routes_unchanged(client):
    """GET routes are the Application's."""
    response = await client.get("/v1/models")
    assert response.status == 200 and await response.text() == "other"
