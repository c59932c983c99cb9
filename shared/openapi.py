"""GET /openapi.json: a service's OpenAPI document (the openapi.yaml beside its app.py), read once
when the app is built and served as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web


def load_document(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def add_openapi_route(app: web.Application, document: Path) -> None:
    body = orjson.dumps(load_document(document))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
