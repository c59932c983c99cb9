"""Which models a caller may use, resolved as LiteLLM resolves it for /v1/models and /model/info:
the key's `models` if it names any, else its team's, else every model of the proxy; in either
list "all-proxy-models" means every model, "all-team-models" the team's list, and the name of a
model access group (a deployment's `model_info.access_groups`) the models in that group. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

ALL_PROXY_MODELS = "all-proxy-models"
ALL_TEAM_MODELS = "all-team-models"


def usable_models(key_models: Sequence[str], team_models: Sequence[str], proxy_models: Sequence[str],
                  access_groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The model names the caller may use, in a stable order, without repeats."""
    if key_models:
        chosen = _expand(key_models, team_models, proxy_models, access_groups)
    elif team_models:
        chosen = _expand(team_models, (), proxy_models, access_groups)
    else:
        chosen = list(proxy_models)
    return list(dict.fromkeys(chosen))


def _expand(names: Iterable[str], team_models: Sequence[str], proxy_models: Sequence[str],
            access_groups: Mapping[str, Sequence[str]]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name == ALL_PROXY_MODELS:
            out += proxy_models
        elif name == ALL_TEAM_MODELS:
            # A team with no list of its own may use every model (LiteLLM's rule for empty lists).
            out += _expand(team_models, (), proxy_models, access_groups) if team_models else proxy_models
        elif name in access_groups:
            out += access_groups[name]
        else:
            out.append(name)
    return out


def access_groups_of(deployments: Iterable[tuple[str, object]]) -> dict[str, list[str]]:
    """group name -> model names, from (model_name, model_info.access_groups) pairs."""
    groups: dict[str, list[str]] = {}
    for model_name, names in deployments:
        if isinstance(names, list | tuple):
            for group in names:
                if isinstance(group, str) and model_name not in groups.setdefault(group, []):
                    groups[group].append(model_name)
    return groups
