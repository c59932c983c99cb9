"""Who is calling: the master key or a virtual key, answered from memory.

Virtual keys are known only by their SHA-256 hash. The `KeyTable` is an in-memory projection of
the entities topic (EntityChanged with entity_type "key", state shaped like a
"LiteLLM_VerificationToken" row); `sync/key_sync.py` keeps it current. The request path never
queries Postgres or Kafka. The admin routes and budget enforcement read `CallerIdentity`."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Protocol

from multidict import CIMultiDictProxy

from services.proxy.auth.ahead_of_log import AheadOfLog
from services.proxy.auth.model_access import KINDS, NO_TEAM, EntityGrants, ModelAccessDenied
from services.proxy.errors import AuthError, KeyRefused
from services.proxy.routing.access import EVERY_MODEL, ModelGrant, model_grant
from shared.events import EntityChanged
from shared.keys import hash_key
from shared.master_key import MASTER_KEY_ALIAS

MASTER_USER_ID = "default_user_id"  # LiteLLM's name for the proxy admin
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_KINDS = ("key", *KINDS)  # what the key table keeps
_NO_GRANTS = EntityGrants()


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """The authenticated caller, as every later step (attribution, budgets, admin) sees it."""

    api_key_hash: str
    is_master: bool = False
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    organization_id: str | None = None
    models: tuple[str, ...] = ()  # as the key names them; `model_grant` is what they admit
    permissions: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # the key's metadata (tags, spend_logs_metadata, ...)
    expires: datetime | None = None
    max_budget: Decimal | None = None
    soft_budget: Decimal | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    budget_duration: str | None = None
    spend: Decimal = Decimal(0)  # as of the last entity change; live spend comes from budgets
    blocked: bool = False
    # Derived once so the request path does no parsing.
    tags: tuple[str, ...] = ()
    spend_logs_metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    expires_at: float | None = None  # epoch seconds
    model_grant: ModelGrant = EVERY_MODEL
    # The key table's teams, users and organisations, read at call time: their changes count at once.
    grants: EntityGrants = field(default=_NO_GRANTS, compare=False, repr=False)

    @property
    def team_alias(self) -> str | None:
        return self.grants.teams.get(self.team_id, NO_TEAM).alias if self.team_id is not None else None

    def model_steps(self) -> tuple[tuple[str, ModelGrant], ...]:
        """LiteLLM's steps, each named as its refusal names it: the key's models; its team's, or for
        a key without a team its user's; its organisation's (the key's `organization_id`)."""
        if self.team_id is not None:
            second = ("team", self.grants.teams.get(self.team_id, NO_TEAM).grant)
        else:
            second = ("user", self.grants.users.get(self.user_id, EVERY_MODEL) if self.user_id is not None else EVERY_MODEL)
        org = self.grants.organizations.get(self.organization_id, EVERY_MODEL) if self.organization_id is not None else EVERY_MODEL
        return ("key", self.model_grant), second, ("org", org)

    def model_refusal(self, model_group: str) -> ModelAccessDenied | None:
        """LiteLLM's refusal from the first step that does not admit the model, or None."""
        if self.is_master:
            return None
        for object_type, grant in self.model_steps():
            if not grant.allows(model_group):
                return ModelAccessDenied(object_type, grant, model_group)
        return None

    def allows_model(self, model_group: str) -> bool:
        """Every step admits the model (routing/access.py)."""
        return self.model_refusal(model_group) is None

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    @classmethod
    def master(cls) -> CallerIdentity:
        """The master key's calls are recorded under a fixed label, never the key's hash: spend
        readers and the usage topic see `api_key`, and a SHA-256 of a guessable key can be
        reversed offline. Budgets and rate limits skip the master key, so nothing needs its hash."""
        return cls(api_key_hash=MASTER_KEY_ALIAS, is_master=True, user_id=MASTER_USER_ID, key_alias="master_key")

    @classmethod
    def from_state(cls, api_key_hash: str, state: Mapping[str, Any], grants: EntityGrants = _NO_GRANTS) -> CallerIdentity:
        """Build from a LiteLLM_VerificationToken-shaped dict (as carried by EntityChanged)."""
        models = state.get("models") or ()
        metadata = state.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            metadata = {}
        tags = metadata.get("tags") or ()
        slm = metadata.get("spend_logs_metadata") or {}
        expires = _datetime(state.get("expires"))
        return cls(
            api_key_hash=api_key_hash,
            key_alias=state.get("key_alias"),
            user_id=state.get("user_id"),
            team_id=state.get("team_id"),
            organization_id=state.get("organization_id"),
            models=tuple(str(m) for m in models) if isinstance(models, list | tuple) else (),
            permissions=MappingProxyType(dict(state.get("permissions") or {})),
            metadata=MappingProxyType(dict(metadata)),
            expires=expires,
            max_budget=_decimal(state.get("max_budget")),
            soft_budget=_decimal(state.get("soft_budget")),
            tpm_limit=_int(state.get("tpm_limit")),
            rpm_limit=_int(state.get("rpm_limit")),
            max_parallel_requests=_int(state.get("max_parallel_requests")),
            budget_duration=state.get("budget_duration"),
            spend=_decimal(state.get("spend")) or Decimal(0),
            blocked=bool(state.get("blocked")),
            tags=tuple(str(t) for t in tags) if isinstance(tags, (list, tuple)) else (),
            spend_logs_metadata=MappingProxyType(dict(slm)) if isinstance(slm, Mapping) else _EMPTY,
            expires_at=expires.timestamp() if expires is not None else None,
            model_grant=model_grant(models, grants.access_groups, is_key=True) if isinstance(models, list | tuple) else EVERY_MODEL,
            grants=grants,
        )


def refusal(identity: CallerIdentity) -> str | None:
    """Why a known key may not be used at all (LiteLLM's words), or None."""
    if identity.blocked:
        return "Key is blocked. Update via `/key/unblock` if you're admin."
    if identity.is_expired():
        return f"Key expired. Key expiry time {identity.expires.isoformat() if identity.expires else ''}"
    return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


class KeyTable:
    """hash -> CallerIdentity, and the teams', users' and organisations' model grants, fed by entity
    changes. Plain code, no I/O. `access_groups` (group -> model names) comes from the config's
    deployments."""

    def __init__(self, access_groups: Mapping[str, list[str]] | None = None) -> None:
        self._keys: dict[str, CallerIdentity] = {}
        self.grants = EntityGrants(access_groups)
        self.synced = False  # set once the table has caught up with the topic at start-up
        self._ahead = AheadOfLog()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, api_key_hash: str) -> CallerIdentity | None:
        return self._keys.get(api_key_hash)

    def apply_here(self, change: EntityChanged) -> None:
        """A change this process made, applied before the topic brings it back."""
        if change.entity_type in _KINDS:
            self._ahead.applied_here(change)
            self._apply(change)

    def apply(self, change: EntityChanged) -> None:
        if change.entity_type in _KINDS and not self._ahead.is_stale(change):
            self._apply(change)

    def _apply(self, change: EntityChanged) -> None:
        if change.entity_type != "key":
            self.grants.apply(change)
        elif change.deleted:
            self._keys.pop(change.entity_id, None)
        else:
            self._keys[change.entity_id] = CallerIdentity.from_state(
                change.entity_id, change.state, self.grants)

    def put(self, identity: CallerIdentity) -> None:
        self._keys[identity.api_key_hash] = identity


def raw_key_from_headers(headers: CIMultiDictProxy[str] | Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>`, else `api-key` (Azure clients), else `x-litellm-api-key`."""
    value = headers.get("Authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if not token:
            return value.strip() or None  # a bare key, as some clients send it
    return headers.get("api-key") or headers.get("x-litellm-api-key") or None


class Authenticator:
    """Turns request headers into a CallerIdentity, or raises a 401 / 403."""

    HASHES_KEPT = 4096  # raw key -> SHA-256 of the keys seen lately; emptied when full

    def __init__(self, master_key: str | None, keys: KeyTable) -> None:
        self._master_key = master_key.encode() if master_key else None
        self._master = CallerIdentity.master() if master_key else None
        self.keys = keys
        self._hashes: dict[str, str] = {}

    def _hash(self, raw: str) -> str:
        """hash_key(raw), remembered: a client sends the same key on every call. Bounded, so
        callers trying random keys cannot grow it."""
        hashed = self._hashes.get(raw)
        if hashed is None:
            if len(self._hashes) >= self.HASHES_KEPT:
                self._hashes.clear()
            hashed = self._hashes[raw] = hash_key(raw)
        return hashed

    def authenticate(self, headers: CIMultiDictProxy[str] | Mapping[str, str]) -> CallerIdentity:
        raw = raw_key_from_headers(headers)
        if raw is None:
            raise AuthError("No api key passed in. Send it as 'Authorization: Bearer <key>' or an 'api-key' header.")
        if self._master_key is not None and hmac.compare_digest(raw.encode(), self._master_key):
            assert self._master is not None
            return self._master
        identity = self.keys.get(self._hash(raw))
        if identity is None:
            raise KeyRefused("Invalid proxy server token passed. Unable to find token in cache.")
        refused = refusal(identity)
        if refused is not None:
            raise KeyRefused(refused)
        return identity

    @staticmethod
    def check_model(identity: CallerIdentity, model_group: str) -> None:
        """LiteLLM's refusal, naming the step (key, team, user or org) that refused."""
        refused = identity.model_refusal(model_group)
        if refused is not None:
            raise refused


KEY_CATCH_UP_S = 2.0  # how long a refused key waits for the key table to read the entities topic


class KeyCatchUp(Protocol):
    """The key table's follower (sync/key_sync.py): reads the entities topic to its end on demand."""

    async def read_to_end(self, timeout: float) -> bool: ...


async def authenticate_with_catch_up(auth: Authenticator, headers: CIMultiDictProxy[str] | Mapping[str, str],
                                     key_sync: KeyCatchUp | None, timeout: float) -> CallerIdentity:
    """`auth.authenticate`, asked once more after the key table has read the entities topic when
    a key is refused: a key created a moment ago through another replica or worker works at once."""
    try:
        return auth.authenticate(headers)
    except KeyRefused:
        if key_sync is None:
            raise
        await key_sync.read_to_end(timeout)
        return auth.authenticate(headers)
