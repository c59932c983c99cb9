"""Which models a caller may use: LiteLLM's rule, one for the call path (`CallerIdentity.allows_model`)
and for the lists of /v1/models and /model/info, so a key may call exactly what it is shown.

A key passes every step that applies to it, as LiteLLM's `_can_object_call_model` reads each list
(`can_key_call_model`, `can_team_access_model`, `can_user_call_model`, `can_org_access_model`): its
own `models`; its team's; a key without a team, its user's; its organisation's. In every list,
empty, "*" or "all-proxy-models" means every model; on a key, "all-team-models" skips the key's
step (the team's step decides; with no team, every model); on a user, "no-default-models" admits
nothing (only team keys may call); the name of a model access group (a deployment's
`model_info.access_groups`) means the models in that group; a name with "*" (`anthropic/*`) is a
pattern. A `ModelGrant` is built once when a key, team, user or organisation changes, so a check on
the request path is a set lookup. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.config import Deployment

ALL_PROXY_MODELS = "all-proxy-models"
ALL_TEAM_MODELS = "all-team-models"
NO_DEFAULT_MODELS = "no-default-models"
_EVERY = ("*", ALL_PROXY_MODELS)


@dataclass(frozen=True, slots=True)
class ModelGrant:
    """One step of the check: the models one entity's list admits."""

    listed: tuple[str, ...] = ()  # as the entity names them (the refusal quotes them)
    everything: bool = True
    names: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    ordered: tuple[str, ...] = ()  # names and patterns in the list's order, for /v1/models

    def allows(self, model: str) -> bool:
        return self.everything or model in self.names or any(p.fullmatch(model) for p in self.patterns)


EVERY_MODEL = ModelGrant()


def model_grant(models: Iterable[object], access_groups: Mapping[str, Sequence[str]], *, is_key: bool) -> ModelGrant:
    listed = tuple(str(m) for m in models)
    if not listed or any(m in _EVERY for m in listed) or (is_key and ALL_TEAM_MODELS in listed):
        return ModelGrant(listed=listed)
    ordered: list[str] = []
    for name in listed:
        ordered += access_groups.get(name, (name,))
    ordered = list(dict.fromkeys(ordered))
    patterns = tuple(re.compile(".*".join(map(re.escape, m.split("*")))) for m in ordered if "*" in m)
    return ModelGrant(listed, False, frozenset(m for m in ordered if "*" not in m), patterns, tuple(ordered))


def user_model_grant(models: Iterable[object], access_groups: Mapping[str, Sequence[str]]) -> ModelGrant:
    """A user's list: as a team's, except that "no-default-models" admits nothing (LiteLLM's
    `can_user_call_model`)."""
    grant = model_grant(models, access_groups, is_key=False)
    return ModelGrant(listed=grant.listed, everything=False) if NO_DEFAULT_MODELS in grant.listed else grant


def usable_models(steps: Sequence[ModelGrant], proxy_models: Sequence[str]) -> list[str]:
    """The model names a caller whose steps are these grants (the key's first) may call, in a
    stable order, without repeats: the first restricted list's names (a pattern also brings the
    proxy's models it matches), kept if every step admits them."""
    chosen = next((grant for grant in steps if not grant.everything), EVERY_MODEL)
    if chosen.everything:
        candidates: Iterable[str] = proxy_models
    else:
        candidates = [n for name in chosen.ordered
                      for n in ((name,) if "*" not in name else (name, *_matching(chosen, proxy_models)))]
    return [n for n in dict.fromkeys(candidates) if all(grant.allows(n) for grant in steps)]


def _matching(grant: ModelGrant, proxy_models: Sequence[str]) -> list[str]:
    return [m for m in proxy_models if any(p.fullmatch(m) for p in grant.patterns)]


def access_groups_of(deployments: Iterable[Deployment]) -> dict[str, list[str]]:
    """group name -> model names, from the deployments' `model_info.access_groups`."""
    groups: dict[str, list[str]] = {}
    for deployment in deployments:
        model_name, names = deployment.model_name, (deployment.model_info.model_extra or {}).get("access_groups")
        if isinstance(names, list | tuple):
            for group in names:
                if isinstance(group, str) and model_name not in groups.setdefault(group, []):
                    groups[group].append(model_name)
    return groups
