"""Each service's OpenAPI document describes exactly the routes its app registers, in OpenAI's error
shape, and the app serves it; the proxy documents the spend routes it forwards as the reports
service documents them. The apps are built, never started."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.proxy.app import build_app as build_proxy
from services.proxy.settings import ProxySettings
from services.proxy.transport.reports_forward import forward_to_reports
from services.reports.app import build_app as build_reports
from services.reports.settings import ReportsSettings
from shared.openapi import load_document
from shared.pricing import Catalog
from tests.fixtures.openapi import (PROXY_DOCUMENT, REPORTS_DOCUMENT, dereferenced, example_path, operations, refs, resolve,
                                     undocumented_bad_query)

ERROR = "#/components/schemas/Error"


@dataclass(frozen=True)
class Service:
    name: str
    document: dict[str, Any]
    app: Callable[[], web.Application]


PROXY = Service("proxy", load_document(PROXY_DOCUMENT),
                lambda: build_proxy(ProxySettings(master_key="sk-test-master-key-0123456789"), Catalog({}, "test")))
REPORTS = Service("reports", load_document(REPORTS_DOCUMENT), lambda: build_reports(ReportsSettings(master_key="sk-test-master")))
each_service = pytest.mark.parametrize("service", [PROXY, REPORTS], ids=lambda service: service.name)


async def resolved(application: web.Application, method: str, path: str) -> web.UrlMappingMatchInfo:
    return await application.router.resolve(make_mocked_request(method, example_path(path)))


def is_forwarded(match: web.UrlMappingMatchInfo) -> bool:
    return match.route.handler is forward_to_reports


# --- both services ------------------------------------------------------------------------------


@each_service
async def test_every_documented_operation_resolves_to_a_route(service: Service):
    """A concrete request for each documented path and method reaches a handler (no 404/405)."""
    application = service.app()
    for op in operations(service.document):
        match = await resolved(application, op.method, op.path)
        assert match.http_exception is None, f"{op.method} {op.path}: {match.http_exception}"


@each_service
async def test_every_registered_route_is_documented(service: Service):
    """Each route the app registers (HEAD aside) is reached by at least one documented operation."""
    application = service.app()
    reached = {(await resolved(application, op.method, op.path)).route for op in operations(service.document)}
    missing = [f"{r.method} {r.resource.canonical}" for r in application.router.routes()
               if r.method != "HEAD" and r not in reached]
    assert missing == []


@each_service
def test_every_reference_resolves(service: Service):
    """No $ref points nowhere."""
    for ref in set(refs(service.document)):
        assert resolve(service.document, {"$ref": ref}) is not None, ref


@each_service
def test_error_answers_use_openais_error_shape(service: Service):
    """Every documented 4xx/5xx answer (but the health probes' own 503) is OpenAI's error shape."""
    error = resolve(service.document, {"$ref": ERROR})
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    for op in operations(service.document):
        if op.path.startswith("/health"):
            continue
        for status, answer in op.spec["responses"].items():
            if int(status) >= 400:
                schema = resolve(service.document, answer)["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR}, f"{op.id} {status}"


@each_service
async def test_openapi_json_serves_this_document(service: Service):
    """GET /openapi.json answers the YAML document as JSON."""
    request = make_mocked_request("GET", "/openapi.json")
    match = await service.app().router.resolve(request)
    response = await match.handler(request)
    assert response.status == 200 and response.content_type == "application/json"
    assert orjson.loads(response.body) == service.document


@each_service
def test_every_operation_with_query_parameters_documents_400(service: Service):
    """A malformed query value is a 400, and every operation taking query parameters says so."""
    assert undocumented_bad_query(service.document) == []


# --- the proxy: its own routes, and the ones it forwards ----------------------------------------


async def test_the_proxys_plain_routes_are_documented_one_for_one():
    """The proxy's own routes and its documented non-forwarded operations are the same set."""
    application = PROXY.app()
    own = {(r.method, r.resource.canonical) for r in application.router.routes() if r.method not in ("HEAD", "*")}
    documented = {(op.method, op.path) for op in operations(PROXY.document)
                  if not is_forwarded(await resolved(application, op.method, op.path))}
    assert documented == own


async def test_forwarded_operations_are_the_reports_services_own():
    """The proxy documents what it forwards exactly as the reports service does, and nothing the forward misses."""
    application = PROXY.app()

    async def forwarded(service: Service) -> dict[tuple[str, str], Any]:
        return {(op.method, op.path): dereferenced(service.document, op.spec) for op in operations(service.document)
                if is_forwarded(await resolved(application, op.method, op.path))}

    documented_by_proxy, reachable_in_reports = await forwarded(PROXY), await forwarded(REPORTS)
    assert sorted(documented_by_proxy) == sorted(reachable_in_reports)
    for key, spec in reachable_in_reports.items():
        assert documented_by_proxy[key] == spec, key


def test_admin_routes_document_401_and_403():
    """Each key/team/user/customer/organisation/budget route documents 401 (no or unknown key) and 403 (a key
    its role does not allow)."""
    admin = [op for op in operations(PROXY.document)
             if op.path.startswith(("/key/", "/team/", "/user/", "/customer/", "/end_user/", "/organization/", "/budget/"))
             and "daily" not in op.path]
    assert len(admin) == 55
    for op in admin:
        assert {"401", "403"} <= set(op.spec["responses"]), op.id


# --- the reports service ------------------------------------------------------------------------


def test_the_reports_document_lists_exactly_the_registered_route_templates():
    """Every reports route template (the static directory as its one file-name template) is documented, and no other."""
    registered = set()
    for route in REPORTS.app().router.routes():
        if route.method == "HEAD":  # aiohttp adds one to each GET
            continue
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/{filename}"
        registered.add((route.method, path))
    assert {(op.method, op.path) for op in operations(REPORTS.document)} == registered


def test_spend_routes_document_401_and_the_permission_answers():
    """Each spend route documents 401; each one a plain key may not read documents 403."""
    readable_by_any_key = {"spend_logs", "spend_logs_ui", "spend_calculate"}
    for op in operations(REPORTS.document):
        if op.spec.get("tags") != ["spend"]:
            continue
        assert "401" in op.spec["responses"], op.id
        assert ("403" in op.spec["responses"]) == (op.id not in readable_by_any_key), op.id
