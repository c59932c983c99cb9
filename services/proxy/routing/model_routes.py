"""LiteLLM's model routes: GET /models and /v1/models, /model/info and /v1/model/info,
/model_group/info. Each answers with what the calling key may use (access.py); the prices shown
are the current catalog's. Money is written as JSON numbers with the Decimal's own digits."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from services.proxy.auth.keys import Authenticator, CallerIdentity
from services.proxy.errors import InvalidRequest
from services.proxy.routing.access import usable_models
from services.proxy.routing.model_info import deployment_info, model_card, model_group_info
from services.proxy.routing.router import deployment_id
from services.proxy.routing.wildcard import is_pattern, listed_names
from shared.config import Deployment
from shared.pricing.versions import CatalogVersions

TRUE = ("true", "1", "yes")
NAME_LIMIT = 256  # longest model name or id a query may ask for


def query_name(request: web.Request, parameter: str) -> str | None:
    value = request.query.get(parameter)
    if value is not None and (len(value) > NAME_LIMIT or "\x00" in value):
        raise InvalidRequest(f"{parameter} must be at most {NAME_LIMIT} characters, without NUL", param=parameter)
    return value


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_answer(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=_exact_decimal), content_type="application/json")


class ModelRoutes:
    def __init__(self, deployments: Sequence[Deployment], catalogs: CatalogVersions, auth: Authenticator) -> None:
        self.deployments = list(deployments)
        self.catalogs = catalogs
        self.auth = auth
        self.proxy_models = list(dict.fromkeys(d.model_name for d in self.deployments))

    def install(self, app: web.Application) -> None:
        for prefix in ("", "/v1"):
            app.router.add_get(prefix + "/models", self.models)
            app.router.add_get(prefix + "/model/info", self.model_info)
        app.router.add_get("/model_group/info", self.model_group_info)

    def usable(self, caller: CallerIdentity) -> list[str]:
        """What the caller may call (the call path's own rule, routing/access.py)."""
        if caller.is_master:
            return list(self.proxy_models)
        return usable_models([grant for _, grant in caller.model_steps()], self.proxy_models)

    async def models(self, request: web.Request) -> web.Response:
        """OpenAI's model list. A wildcard deployment lists the catalog's models of its provider
        (and itself too with ?return_wildcard_routes=true), as LiteLLM does."""
        caller = self.auth.authenticate(request.headers)
        with_routes = request.query.get("return_wildcard_routes", "").lower() in TRUE
        names: list[str] = []
        for name in self.usable(caller):
            if is_pattern(name):
                if with_routes:
                    names.append(name)
                names += listed_names(name, self._litellm_model(name), self.catalogs.current.entries)
            else:
                names.append(name)
        data = [model_card(name) for name in dict.fromkeys(names)]
        return json_answer({"data": data, "object": "list"})

    async def model_info(self, request: web.Request) -> web.Response:
        """Every deployment the caller may use (or the one `litellm_model_id` names)."""
        caller = self.auth.authenticate(request.headers)
        allowed = set(self.usable(caller))
        wanted = query_name(request, "litellm_model_id")
        catalog = self.catalogs.current
        rows = [deployment_info(d, catalog) for d in self.deployments
                if d.model_name in allowed and (wanted is None or deployment_id(d) == wanted)]
        return json_answer({"data": rows})

    async def model_group_info(self, request: web.Request) -> web.Response:
        """One entry per model name the caller may use (or the one `model_group` names)."""
        caller = self.auth.authenticate(request.headers)
        wanted = query_name(request, "model_group")
        catalog = self.catalogs.current
        groups = [name for name in self.usable(caller) if name in self.proxy_models and wanted in (None, name)]
        data = [model_group_info(name, [d for d in self.deployments if d.model_name == name], catalog) for name in groups]
        return json_answer({"data": data})

    def _litellm_model(self, model_name: str) -> str:
        return next((d.litellm_params.model for d in self.deployments if d.model_name == model_name), model_name)
