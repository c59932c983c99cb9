"""Who is calling an admin route and what LiteLLM lets them do there. Pure apart from reading the
entity directory.

The master key, or a key whose internal user has user_role "proxy_admin", is the admin; a
"proxy_admin_viewer" may read what the admin reads. Any other valid key may read itself (/key/info,
/key/list); a key whose user is an "internal_user" may also create, change and delete its own
user's keys; a key whose user is an "admin" member of a team manages that team's members. No key, an unknown key, a blocked or an expired key is a 401 (as on the LLM routes);
anything else not allowed is a 403."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from services.proxy.auth.keys import CallerIdentity, raw_key_from_headers, refusal
from services.proxy.budget.entities import EntityDirectory
from services.proxy.errors import AuthError, PermissionDenied
from shared.keys import hash_key

ADMIN_ROLES = frozenset({"proxy_admin"})
VIEWER_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})
SELF_SERVICE_ROLES = frozenset({"proxy_admin", "internal_user"})


class Allowed(Enum):
    ADMIN = "admin"  # the proxy admin only
    ADMIN_READ = "admin_read"  # the admin and the admin viewer
    SELF_READ = "self_read"  # any valid key; the handler shows only what is its own
    SELF_WRITE = "self_write"  # the admin, and an internal user on its own keys
    TEAM_ADMIN = "team_admin"  # any valid key; the handler then requires the admin or an admin of the team


@dataclass(frozen=True)
class Caller:
    identity: CallerIdentity | None  # None: the master key
    role: str | None  # the internal user's user_role; "proxy_admin" for the master key

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    @property
    def reads_everything(self) -> bool:
        return self.role in VIEWER_ROLES

    @property
    def user_id(self) -> str | None:
        return None if self.identity is None else self.identity.user_id

    @property
    def api_key_hash(self) -> str | None:
        return None if self.identity is None else self.identity.api_key_hash


class Access:
    def __init__(self, master_key: str | None, directory: EntityDirectory) -> None:
        self._master = master_key.encode() if master_key else None
        self.directory = directory

    def caller(self, request: web.Request) -> Caller:
        raw = raw_key_from_headers(request.headers)
        if raw is None:
            raise AuthError("No api key passed in. Send it as 'Authorization: Bearer <key>' or an 'api-key' header.")
        if self._master is not None and hmac.compare_digest(raw.encode(), self._master):
            return Caller(None, "proxy_admin")
        hashed = hash_key(raw)
        state = self.directory.state("key", hashed)
        if state is None:
            raise AuthError("Invalid proxy server token passed. Unable to find token in cache.")
        identity = CallerIdentity.from_state(hashed, state)
        refused = refusal(identity)
        if refused is not None:  # a key that may not be used at all is a 401, as on every route
            raise AuthError(refused)
        user = self.directory.state("user", identity.user_id) if identity.user_id else None
        return Caller(identity, user.get("user_role") if user else None)

    def require(self, request: web.Request, allowed: Allowed) -> Caller:
        caller = self.caller(request)
        if allowed in (Allowed.SELF_READ, Allowed.TEAM_ADMIN):
            return caller
        if allowed is Allowed.ADMIN_READ and caller.reads_everything:
            return caller
        if allowed is Allowed.SELF_WRITE and caller.role in SELF_SERVICE_ROLES:
            return caller
        if caller.is_admin:
            return caller
        raise denied(request.path, caller)


def require_team_admin(caller: Caller, team_id: str, team: Mapping[str, Any], path: str) -> None:
    """LiteLLM's rule for a team's member routes: the proxy admin, or a member of the team with role "admin"."""
    if caller.is_admin or (caller.user_id is not None and any(
            isinstance(m, Mapping) and m.get("user_id") == caller.user_id and m.get("role") == "admin"
            for m in team.get("members_with_roles") or [])):
        return
    raise PermissionDenied(f"Call not allowed. User not proxy admin OR team admin. route={path}, team_id={team_id}")


def denied(path: str, caller: Caller) -> PermissionDenied:
    """LiteLLM's wording for a route the caller's role may not use."""
    return PermissionDenied(
        f"Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={path}. "
        f"Your role={caller.role or 'unknown'}. Your user_id={caller.user_id}")
