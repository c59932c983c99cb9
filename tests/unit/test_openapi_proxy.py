"""The proxy's OpenAPI document describes exactly the routes its app registers (the spend routes it
forwards as the reports service documents them), in OpenAI's error shape, and the app serves it."""

import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.proxy.app import build_app
from services.proxy.forward import forward_to_reports
from services.proxy.settings import ProxySettings
from shared.openapi import load_document
from shared.pricing import Catalog
from tests.fixtures.openapi import (PROXY_DOCUMENT, REPORTS_DOCUMENT, dereferenced, example_path, operations, refs, resolve,
                                     undocumented_bad_query)

DOCUMENT = load_document(PROXY_DOCUMENT)
REPORTS = load_document(REPORTS_DOCUMENT)
ERROR = "#/components/schemas/Error"
ADMIN_PREFIXES = ("/key/", "/team/", "/user/", "/customer/")


def app() -> web.Application:
    return build_app(ProxySettings(master_key="sk-test-master-key-0123456789"), Catalog({}, "test"))  # built, never started


async def resolved(application: web.Application, method: str, path: str) -> web.UrlMappingMatchInfo:
    return await application.router.resolve(make_mocked_request(method, example_path(path)))


def is_forwarded(match: web.UrlMappingMatchInfo) -> bool:
    return match.route.handler is forward_to_reports


async def test_every_documented_operation_resolves_to_a_route():
    """A concrete request for each documented path and method reaches a handler (no 404/405)."""
    application = app()
    for op in operations(DOCUMENT):
        match = await resolved(application, op.method, op.path)
        assert match.http_exception is None, f"{op.method} {op.path}: {match.http_exception}"


async def test_every_registered_route_is_documented():
    """Each route the app registers (HEAD aside) is reached by at least one documented operation."""
    application = app()
    reached = set()
    for op in operations(DOCUMENT):
        reached.add((await resolved(application, op.method, op.path)).route)
    missing = [f"{r.method} {r.resource.canonical}" for r in application.router.routes()
               if r.method != "HEAD" and r not in reached]
    assert missing == []


async def test_plain_routes_are_documented_one_for_one():
    """The proxy's own routes and the documented non-forwarded operations are the same set."""
    application = app()
    own = {(r.method, r.resource.canonical) for r in application.router.routes()
           if r.method not in ("HEAD", "*")}
    documented = set()
    for op in operations(DOCUMENT):
        if not is_forwarded(await resolved(application, op.method, op.path)):
            documented.add((op.method, op.path))
    assert documented == own


async def test_forwarded_operations_are_the_reports_services_own():
    """What the proxy forwards is documented exactly as the reports service documents it, and every
    reports operation the forward patterns reach is in the proxy's document."""
    application = app()
    forwarded = {}
    for op in operations(DOCUMENT):
        if is_forwarded(await resolved(application, op.method, op.path)):
            forwarded[(op.method, op.path)] = dereferenced(DOCUMENT, op.spec)
    reachable = {}
    for op in operations(REPORTS):
        if is_forwarded(await resolved(application, op.method, op.path)):
            reachable[(op.method, op.path)] = dereferenced(REPORTS, op.spec)
    assert sorted(forwarded) == sorted(reachable)
    for key, spec in reachable.items():
        assert forwarded[key] == spec, key


def test_every_reference_resolves():
    """No $ref points nowhere."""
    for ref in set(refs(DOCUMENT)):
        assert resolve(DOCUMENT, {"$ref": ref}) is not None, ref


def test_error_answers_use_openais_error_shape():
    """Every documented 4xx/5xx answer (but the health probes' own) is OpenAI's error shape."""
    error = resolve(DOCUMENT, {"$ref": ERROR})
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    for op in operations(DOCUMENT):
        if op.path.startswith("/health"):
            continue
        for status, answer in op.spec["responses"].items():
            if int(status) >= 400:
                schema = resolve(DOCUMENT, answer)["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR}, f"{op.id} {status}"


def test_admin_routes_document_401_and_403():
    """Each key/team/user/customer route documents 401 (no or unknown key) and 403 (not the master key)."""
    admin = [op for op in operations(DOCUMENT) if op.path.startswith(ADMIN_PREFIXES) and "daily" not in op.path]
    assert len(admin) == 18
    for op in admin:
        assert {"401", "403"} <= set(op.spec["responses"]), op.id


async def test_openapi_json_serves_this_document():
    """GET /openapi.json answers the YAML document as JSON."""
    application = app()
    request = make_mocked_request("GET", "/openapi.json")
    match = await application.router.resolve(request)
    response = await match.handler(request)
    assert response.status == 200 and response.content_type == "application/json"
    assert orjson.loads(response.body) == DOCUMENT


def test_every_operation_with_query_parameters_documents_400():
    """A malformed query value is a 400 (the fuzz test once found /spend/users did not say so)."""
    assert undocumented_bad_query(DOCUMENT) == []
