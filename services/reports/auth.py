"""Who is calling: the master key, or a virtual key looked up by its SHA-256 hash in
"LiteLLM_VerificationToken" (permissions, expiry, blocked), cached for a few seconds."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from shared.errors import Forbidden, Unauthorized
from shared.keys import hash_key


@dataclass(frozen=True)
class Caller:
    is_master: bool
    key_hash: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    can_read_spend: bool = False  # permissions.get_spend_routes

    @property
    def sees_everything(self) -> bool:
        return self.is_master or self.can_read_spend


KeyLoader = Callable[[str], Awaitable[dict[str, Any] | None]]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else header
    for name in ("x-litellm-api-key", "api-key"):
        if request.headers.get(name):
            return request.headers[name].strip()
    return None


def _granted(permissions: Any) -> bool:
    if not isinstance(permissions, dict):
        return False
    value = permissions.get("get_spend_routes")
    return value is True or (isinstance(value, str) and value.lower() == "true")


class Authenticator:
    def __init__(self, master_key: str | None, load_key: KeyLoader, ttl_seconds: float = 5.0, max_entries: int = 10_000,
                 unknown_ttl_seconds: float = 0.25) -> None:
        self._master = master_key
        self._load = load_key
        self._ttl = ttl_seconds
        # A key generated a moment ago may not have reached the table yet: remember "unknown" only
        # briefly, so a new key works as soon as the ledger has written it.
        self._unknown_ttl = unknown_ttl_seconds
        self._max = max_entries
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def _row(self, token_hash: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._cache.get(token_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._load(token_hash)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[token_hash] = (now + (self._ttl if row is not None else self._unknown_ttl), row)
        return row

    async def caller(self, request: web.Request) -> Caller:
        raw = bearer_token(request)
        if not raw:
            raise Unauthorized("No api key passed in. Send it as 'Authorization: Bearer <key>'.", code="401")
        if self._master and hmac.compare_digest(raw.encode(), self._master.encode()):
            return Caller(is_master=True)
        row = await self._row(hash_key(raw))
        if row is None:
            raise Unauthorized("Invalid API key: no such key", code="401")
        if row.get("blocked"):
            raise Unauthorized("Invalid API key: this key is blocked", code="401")
        expires = row.get("expires")
        if isinstance(expires, datetime) and expires <= datetime.now(timezone.utc):
            raise Unauthorized(f"Invalid API key: this key expired at {expires.isoformat()}", code="401")
        return Caller(is_master=False, key_hash=row["token"], user_id=row.get("user_id"), team_id=row.get("team_id"),
                      can_read_spend=_granted(row.get("permissions")))


def require_spend_reader(caller: Caller, path: str) -> None:
    if not caller.sees_everything:
        raise Forbidden(f"This key may not read {path}: it needs the master key or permissions "
                        '{"get_spend_routes": true}', code="403")


def require_master(caller: Caller, path: str) -> None:
    if not caller.is_master:
        raise Forbidden(f"Only the master key may call {path}", code="403")
