"""The reports service's OpenAPI document describes exactly the routes its app registers, in
OpenAI's error shape, and the app serves it at /openapi.json."""

import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.reports.app import build_app
from services.reports.settings import ReportsSettings
from shared.openapi import load_document
from tests.fixtures.openapi import REPORTS_DOCUMENT, example_path, operations, refs, resolve, undocumented_bad_query

DOCUMENT = load_document(REPORTS_DOCUMENT)
ERROR = "#/components/schemas/Error"


def app() -> web.Application:
    return build_app(ReportsSettings(master_key="sk-test-master"))  # built, never started


def registered(application: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route, HEAD (aiohttp adds it to each GET) left out; the
    static directory as the one file-name template it serves."""
    out = set()
    for route in application.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/{filename}"
        out.add((route.method, path))
    return out


def test_document_lists_exactly_the_registered_routes():
    """Every route the app registers is documented, and every documented operation is registered."""
    documented = {(op.method, op.path) for op in operations(DOCUMENT)}
    assert documented == registered(app())


async def test_every_documented_operation_resolves_to_its_route():
    """A concrete request for each documented path and method reaches a handler (no 404/405)."""
    router = app().router
    for op in operations(DOCUMENT):
        match = await router.resolve(make_mocked_request(op.method, example_path(op.path)))
        assert match.http_exception is None, f"{op.method} {op.path}: {match.http_exception}"


def test_every_reference_resolves():
    """No $ref points nowhere."""
    for ref in set(refs(DOCUMENT)):
        assert resolve(DOCUMENT, {"$ref": ref}) is not None, ref


def test_error_answers_use_openais_error_shape():
    """Every documented 4xx/5xx answer (but /health's own 503) is {"error": {"message", "type", "param", "code"}}."""
    error = resolve(DOCUMENT, {"$ref": ERROR})
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    for op in operations(DOCUMENT):
        if op.path == "/health":
            continue
        for status, answer in op.spec["responses"].items():
            if int(status) >= 400:
                schema = resolve(DOCUMENT, answer)["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR}, f"{op.id} {status}"


def test_spend_routes_document_401_and_the_permission_answers():
    """Each spend route documents 401; each one a plain key may not read documents 403."""
    readable_by_any_key = {"spend_logs", "spend_calculate"}
    for op in operations(DOCUMENT):
        if op.spec.get("tags") != ["spend"]:
            continue
        assert "401" in op.spec["responses"], op.id
        assert ("403" in op.spec["responses"]) == (op.id not in readable_by_any_key), op.id


async def test_openapi_json_serves_this_document():
    """GET /openapi.json answers the YAML document as JSON."""
    router = app().router
    request = make_mocked_request("GET", "/openapi.json")
    match = await router.resolve(request)
    response = await match.handler(request)
    assert response.status == 200 and response.content_type == "application/json"
    assert orjson.loads(response.body) == DOCUMENT


def test_every_operation_with_query_parameters_documents_400():
    """A malformed query value is a 400 (the fuzz test once found /spend/users did not say so)."""
    assert undocumented_bad_query(DOCUMENT) == []
