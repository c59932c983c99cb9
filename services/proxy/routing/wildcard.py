"""Wildcard deployments: a model_list entry whose model_name has a `*` ("openai/*", "*",
"gemini/gemini-2.5-*") serves every requested name it matches, as LiteLLM's pattern router does.
The `*`s of litellm_params.model take the matched text in order ("openai/*" asked for
"openai/gpt-4o" calls openai/gpt-4o), and the call's model group is the name asked for. An exact
model_name always wins over a pattern; among patterns, the one with more literal characters wins.

Pure: targets are built from the deployment on first use and remembered (a bounded number)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from shared.config import Deployment

BUILT_KEPT = 2048  # concrete targets remembered; a caller trying random names cannot grow it past this
# What a matched name may hold: it becomes part of the upstream model name, and for Azure a URL path segment.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,255}$")


def is_pattern(model_name: str) -> bool:
    return "*" in model_name


@dataclass(frozen=True)
class Pattern:
    model_name: str
    regex: re.Pattern[str]
    deployments: tuple[Deployment, ...]

    @property
    def literal_chars(self) -> int:
        return len(self.model_name) - self.model_name.count("*")


def compile_pattern(model_name: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(model_name).replace(r"\*", "(.*?)") + "$", re.DOTALL)


def concrete_deployment(deployment: Deployment, name: str, groups: Sequence[str], model_id: str) -> Deployment:
    """The deployment serving `name`: litellm_params.model with its `*`s filled from `groups`
    (the deployment's id kept, so its headers and spend logs name the wildcard deployment)."""
    model = deployment.litellm_params.model
    for group in groups:
        if "*" not in model:
            break
        model = model.replace("*", group, 1)
    params = deployment.litellm_params.model_copy(update={"model": model})
    info = deployment.model_info.model_copy(update={"id": model_id})
    return deployment.model_copy(update={"model_name": name, "litellm_params": params, "model_info": info})


class WildcardRoutes:
    """Patterns → a target per concrete name. `build` turns a Deployment into a ready Target."""

    def __init__(self, deployments: Sequence[Deployment], build: Callable[[Deployment], object],
                 model_id: Callable[[Deployment], str]) -> None:
        by_name: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_name.setdefault(deployment.model_name, []).append(deployment)
        self.patterns = sorted(
            (Pattern(name, compile_pattern(name), tuple(group)) for name, group in by_name.items()),
            key=lambda p: -p.literal_chars,
        )
        self._build = build
        self._model_id = model_id
        self._turns: dict[str, Iterator[Deployment]] = {p.model_name: itertools.cycle(p.deployments) for p in self.patterns}
        self._built: dict[tuple[str, int], object] = {}
        # The deployments as configured (with their `*`s): the pools and timeouts are per deployment.
        self.templates = [build(d) for p in self.patterns for d in p.deployments]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, name: str) -> tuple[Pattern, tuple[str, ...]] | None:
        if not _SAFE_NAME.match(name) or "/../" in f"/{name}/" or "/./" in f"/{name}/":
            return None
        for pattern in self.patterns:
            found = pattern.regex.match(name)
            if found is not None:
                return pattern, found.groups()
        return None

    def target(self, name: str) -> object | None:
        """The target serving `name`, or None when no pattern matches it."""
        matched = self.match(name)
        if matched is None:
            return None
        pattern, groups = matched
        deployment = next(self._turns[pattern.model_name])
        key = (name, id(deployment))
        target = self._built.get(key)
        if target is None:
            if len(self._built) >= BUILT_KEPT:
                self._built.clear()
            target = self._built[key] = self._build(
                concrete_deployment(deployment, name, groups, self._model_id(deployment)))
        return target


def provider_models(entries: Mapping[str, Mapping[str, object]], provider: str) -> list[str]:
    """The catalog's models of `provider`, named "<provider>/<model>" (what LiteLLM lists for a
    provider wildcard on /v1/models)."""
    names = []
    for name, entry in entries.items():
        if entry.get("litellm_provider") == provider and entry.get("mode") in (None, "chat", "completion", "embedding",
                                                                               "image_generation", "responses"):
            names.append(name if name.startswith(provider + "/") else f"{provider}/{name}")
    return sorted(dict.fromkeys(names))


def listed_names(pattern: str, litellm_model: str, entries: Mapping[str, Mapping[str, object]]) -> list[str]:
    """What /v1/models shows for a wildcard: "openai/*" → every OpenAI model the catalog knows,
    "gemini/gemini-2.5-*" → those of them with that prefix; a bare "*" stays as it is."""
    prefix, slash, suffix = pattern.partition("/")
    if not slash:
        return [pattern]
    provider = litellm_model.split("/", 1)[0] if "/" in litellm_model else prefix
    known = [f"{prefix}/{name.split('/', 1)[1]}" for name in provider_models(entries, provider)]
    if suffix != "*":
        wanted = prefix + "/" + suffix.replace("*", "")
        known = [name for name in known if name.startswith(wanted)]
    return known or [pattern]
