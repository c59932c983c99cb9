"""The model lists that bound a key beyond its own: its team's, its user's (a key without a team)
and its organisation's, each kept as a `ModelGrant` built when the entities topic brings a change
of that team, user or organisation, and read at call time, so the change counts for every key of
the entity on its next call without rebuilding the keys. The refusal is LiteLLM's
(`_can_object_call_model`). Plain code, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.proxy.errors import ProxyError
from services.proxy.routing.access import EVERY_MODEL, NO_DEFAULT_MODELS, ModelGrant, model_grant, user_model_grant
from shared.events import EntityChanged

KINDS = ("team", "user", "organization")


class ModelAccessDenied(ProxyError):
    """LiteLLM's refusal of a model to a key or to its team, user or organisation: 401, param
    `model`, type `<object>_model_access_denied` (`key`, `team`, `user`, `org`)."""

    status = 401

    def __init__(self, object_type: str, grant: ModelGrant, model: str) -> None:
        error_type = f"{object_type}_model_access_denied"
        message = (f"{object_type} not allowed to access model. This {object_type} can only access "
                   f"models={list(grant.listed)}. Tried to access {model}")
        if object_type == "user" and NO_DEFAULT_MODELS in grant.listed:  # LiteLLM's words and type for it
            error_type = "key_model_access_denied"
            message = f"User not allowed to access model. No default model access, only team models allowed. Tried to access {model}"
        super().__init__(message, type=error_type, param="model", code="401")


@dataclass(frozen=True, slots=True)
class TeamView:
    """What the call path needs of a key's team, derived once per team change."""

    grant: ModelGrant = EVERY_MODEL
    alias: str | None = None


NO_TEAM = TeamView()


class EntityGrants:
    """team_id -> TeamView, user_id -> ModelGrant, organization_id -> ModelGrant. An entity the
    table has not seen (or that was deleted) bounds nothing, as in LiteLLM."""

    def __init__(self, access_groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.access_groups = dict(access_groups or {})
        self.teams: dict[str, TeamView] = {}
        self.users: dict[str, ModelGrant] = {}
        self.organizations: dict[str, ModelGrant] = {}

    def apply(self, change: EntityChanged) -> None:
        """A team's, user's or organisation's change (other kinds are not this view's)."""
        kind, entity_id = change.entity_type, change.entity_id
        views: dict | None = {"team": self.teams, "user": self.users, "organization": self.organizations}.get(kind)
        if views is None:
            return
        if change.deleted:
            views.pop(entity_id, None)
            return
        models = change.state.get("models")
        listed = models if isinstance(models, list) else ()
        if kind == "team":
            alias = change.state.get("team_alias")
            views[entity_id] = TeamView(model_grant(listed, self.access_groups, is_key=False),
                                        alias if isinstance(alias, str) else None)
        elif kind == "user":
            views[entity_id] = user_model_grant(listed, self.access_groups)
        else:
            views[entity_id] = model_grant(listed, self.access_groups, is_key=False)
