"""OpenAI's error shape, shared by every HTTP service, and the middleware that produces it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


class TallyError(Exception):
    """Base of every error a service answers with a status of its own choosing."""

    status = 500
    code: str | None = None
    headers: Mapping[str, str] | None = None  # extra headers on the error answer

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, param: str | None = None, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.type = type


class BadRequest(TallyError):
    status = 400


class Unauthorized(TallyError):
    status = 401


class Forbidden(TallyError):
    status = 403


class NotFound(TallyError):
    status = 404


def error_body(message: str, status: int, *, type: str | None = None, code: str | int | None = None, param: str | None = None) -> dict:
    return {
        "error": {
            "message": message,
            "type": type or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": str(code if code is not None else status),
        }
    }


def error_response(message: str, status: int, **kwargs: object) -> web.Response:
    return web.json_response(error_body(message, status, **kwargs), status=status)  # type: ignore[arg-type]


@web.middleware
async def openai_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every failure leaves as {"error": {...}} with a fitting status; nothing leaks a traceback."""
    try:
        return await handler(request)
    except TallyError as exc:
        response = error_response(exc.message, exc.status, type=exc.type, code=exc.code, param=exc.param)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 404:
            message = f"Route not found: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"Method {request.method} not allowed on {request.path}"
        elif exc.status == 413:
            message = "Request body is larger than the configured limit"
        return error_response(message, exc.status)
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return error_response("Internal server error", 500)
