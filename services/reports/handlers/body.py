"""Reading a POST body: an object or nothing; anything else is a 400 that says why."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from shared.errors import BadRequest


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body
