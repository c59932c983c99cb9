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
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
        # A caller's metadata may hold an integer JSON allows but orjson cannot write: write
        # those as raw numbers too (the rare, slower path).
        return orjson.dumps(_big_ints_as_fragments(value), default=_default, option=_OPTIONS)


def _big_ints_as_fragments(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {k: _big_ints_as_fragments(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_fragments(v) for v in value]
    return value


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type="application/json")


def raw_json_response(text: str | bytes) -> web.Response:
    """A body that is already JSON (built by Postgres)."""
    body = text.encode() if isinstance(text, str) else text
    return web.Response(body=body, content_type="application/json")
