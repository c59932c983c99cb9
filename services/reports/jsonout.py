"""JSON out with money exact: a Decimal is written as its own decimal text, as a JSON number
(never through a float). Postgres-built JSON (numeric text is exact too) passes through as is."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} is not a finite amount")
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type="application/json")


def raw_json_response(text: str | bytes) -> web.Response:
    """A body that is already JSON (built by Postgres)."""
    body = text.encode() if isinstance(text, str) else text
    return web.Response(body=body, content_type="application/json")
