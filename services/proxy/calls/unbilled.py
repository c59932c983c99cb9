"""An upstream request that is not a billed call (count_tokens, retrieving a stored response):
no admission, no settlement, no usage event; only the upstream's answer or its error."""

from __future__ import annotations

from typing import Any

from services.proxy.errors import UpstreamError
from services.proxy.providers import wire
from services.proxy.routing.router import Target
from services.proxy.transport.http1 import UpstreamConnectionError


async def unbilled_request(relay: Any, target: Target, path: str, payload: bytes = b"", method: str = "POST") -> bytes:
    """The answer's body, within the deployment's timeout; an error status, a timeout or an
    unreachable upstream as the UpstreamError a billed call would raise."""
    pool = relay.pools[target.origin]
    try:
        response = await pool.post(path, payload, target.header_block, pool.deadline(relay.timeouts[target.model_id]), method=method)
        raw = await response.read()
    except TimeoutError as exc:
        raise UpstreamError(f"Request timed out: upstream {target.api_base} did not answer in time", 504, type="timeout") from exc
    except UpstreamConnectionError as exc:
        raise UpstreamError(f"upstream {target.api_base} unreachable: {exc}", 502, type="api_connection_error") from exc
    if response.status >= 400:
        raise wire.upstream_error(target, response.status, raw)
    return raw
