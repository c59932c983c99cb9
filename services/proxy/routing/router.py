"""From the config's model_list to ready-to-call upstream targets, computed once at start-up.

Pure: no I/O. A `Target` holds everything the hot path needs for one deployment (URLs per call
type, auth headers, the x-litellm-model-* header values); the `Router` picks one target per call
among the deployments sharing a model_name (LiteLLM's load balancing)."""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from services.proxy.errors import ConfigurationError, InvalidRequest
from services.proxy.routing.cooldown import Cooldowns
from services.proxy.routing.policy import MAX_RETRIES, RouterPolicy, bounded_count, policy_from_config
from services.proxy.routing.strategy import LEAST_BUSY, SIMPLE_SHUFFLE, least_busy, shuffle_weights, simple_shuffle
from services.proxy.routing.wildcard import WildcardRoutes, is_pattern
from services.proxy.transport.answer import JSON, header_lines
from shared.config import Deployment, ProxyConfig

CHAT, TEXT, EMBEDDING, IMAGE = "acompletion", "atext_completion", "aembedding", "aimage_generation"
PATHS = {CHAT: "/chat/completions", TEXT: "/completions", EMBEDDING: "/embeddings", IMAGE: "/images/generations"}

# Providers that speak OpenAI's API, with their public endpoint (None: api_base is required).
OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "text-completion-openai": "https://api.openai.com/v1",
    "custom_openai": None,
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "perplexity": "https://api.perplexity.ai",
    "openrouter": "https://openrouter.ai/api/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "xai": "https://api.x.ai/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "hosted_vllm": None,
    "lm_studio": "http://localhost:1234/v1",
    "ollama": "http://localhost:11434",
    "ollama_chat": "http://localhost:11434",
}
# Where LiteLLM looks for a provider's key when the config gives none.
PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY", "text-completion-openai": "OPENAI_API_KEY", "groq": "GROQ_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY", "mistral": "MISTRAL_API_KEY", "deepseek": "DEEPSEEK_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY", "perplexity": "PERPLEXITYAI_API_KEY", "openrouter": "OPENROUTER_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY", "xai": "XAI_API_KEY", "cerebras": "CEREBRAS_API_KEY",
    "azure": "AZURE_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
}
PROVIDER_BASE_ENV = {"azure": "AZURE_API_BASE", "openai": "OPENAI_API_BASE"}
DEFAULT_AZURE_API_VERSION = "2024-10-21"
ANTHROPIC_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"

OPENAI, AZURE, ANTHROPIC = "openai", "azure", "anthropic"  # wire protocols
NATIVE_PROVIDERS = ("gemini", "bedrock", "vertex_ai", "cohere", "cohere_chat")  # their own APIs: services/proxy/providers/endpoints.py


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment, ready to call."""

    model_group: str
    model: str  # litellm_params.model as configured, e.g. "groq/llama3-8b-8192"
    provider: str  # custom_llm_provider: "groq", "azure", "anthropic", ...
    wire: str  # OPENAI | AZURE | ANTHROPIC
    upstream_model: str  # the name sent upstream
    api_base: str  # shown in x-litellm-model-api-base and recorded, without query string
    origin: str  # scheme://host:port, the key of the connection pool
    urls: Mapping[str, str]  # call type -> full URL
    headers: Mapping[str, str]  # auth and protocol headers sent upstream
    model_id: str
    base_model: str | None = None
    custom_prices: Mapping[str, Decimal] = field(default_factory=dict)
    timeout_s: float | None = None
    num_retries: int | None = None  # litellm_params.num_retries: this deployment's group retries after it fails
    weight_setting: float | None = None  # litellm_params.weight, rpm, tpm: simple-shuffle's draw
    rpm: int | None = None
    tpm: int | None = None
    mode: str | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    paths: Mapping[str, str] = field(default_factory=dict)  # call type -> path?query, for the HTTP client
    header_block: bytes = b""  # `headers` as ready-made "Name: value\r\n" lines
    answer_lines: str = ""  # Content-Type and response_headers as lines, for a plain answer's head
    native: Any = None  # a providers.native.NativeWire for a provider with its own API, else None

    def url(self, call_type: str) -> str:
        return self.urls[call_type]


def split_provider(model: str, custom_llm_provider: str | None = None) -> tuple[str, str]:
    """("groq", "llama3-8b-8192") from "groq/llama3-8b-8192"; a bare name is OpenAI's (or Anthropic's
    for claude-*)."""
    if custom_llm_provider:
        prefix = custom_llm_provider + "/"
        return custom_llm_provider, model[len(prefix):] if model.startswith(prefix) else model
    provider, sep, name = model.partition("/")
    if sep and (provider in OPENAI_COMPATIBLE or provider in (AZURE, ANTHROPIC) or provider in NATIVE_PROVIDERS):
        return provider, name
    if model.startswith("claude"):
        return ANTHROPIC, model
    if sep:
        raise ConfigurationError(f"model {model!r}: unknown provider {provider!r}; use openai/<name> with an api_base for an OpenAI-compatible server")
    return "openai", model


def strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def deployment_id(deployment: Deployment) -> str:
    if deployment.model_info.id:
        return deployment.model_info.id
    params = deployment.litellm_params.model_dump(exclude_none=True)
    raw = orjson.dumps({"model_name": deployment.model_name, **params}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(raw).hexdigest()


def build_target(deployment: Deployment, env: Mapping[str, str]) -> Target:
    params = deployment.litellm_params
    provider, name = split_provider(params.model, params.custom_llm_provider)
    api_key = params.api_key or env.get(PROVIDER_KEY_ENV.get(provider, ""), "")
    where = f"model_list entry {deployment.model_name!r} ({params.model})"
    headers: dict[str, str] = {"Content-Type": "application/json"}
    native = None
    if provider in NATIVE_PROVIDERS:
        from services.proxy.providers.endpoints import native_wire  # providers import this module

        native = native_wire(provider, name, params, env, where)
        urls, wire, shown = native.urls, provider, native.api_base
        headers.update(native.headers)
    elif provider == AZURE:
        base = (params.api_base or env.get("AZURE_API_BASE") or "").rstrip("/")
        if not base:
            raise ConfigurationError(f"{where}: azure needs an api_base (https://<resource>.openai.azure.com)")
        version = params.api_version or env.get("AZURE_API_VERSION") or DEFAULT_AZURE_API_VERSION
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        urls = {ct: f"{base}/openai/deployments/{name}{path}?api-version={version}" for ct, path in PATHS.items()}
        if api_key:
            headers["api-key"] = api_key
        wire, shown = AZURE, strip_query(params.api_base or base)
    elif provider == ANTHROPIC:
        base = (params.api_base or ANTHROPIC_BASE).rstrip("/")
        for suffix in ("/v1/messages", "/v1"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        urls = {CHAT: f"{base}/v1/messages"}
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
        wire, shown = ANTHROPIC, base
    else:
        base = params.api_base or env.get(PROVIDER_BASE_ENV.get(provider, ""), "") or OPENAI_COMPATIBLE[provider] or ""
        if not base:
            raise ConfigurationError(f"{where}: {provider} needs an api_base")
        base = base.rstrip("/")
        if provider in ("ollama", "ollama_chat") and not base.endswith("/v1"):
            base += "/v1"  # Ollama's OpenAI-compatible API
        query = urlsplit(base).query
        clean = strip_query(base)
        urls = {ct: f"{clean}{path}" + (f"?{query}" if query else "") for ct, path in PATHS.items()}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        wire, shown = OPENAI, clean
    model_id = deployment_id(deployment)
    headers["Accept-Encoding"] = "identity"
    headers["User-Agent"] = "tally-proxy"
    weight_setting = (params.model_extra or {}).get("weight")
    if weight_setting is not None and (isinstance(weight_setting, bool) or not isinstance(weight_setting, (int, float)) or weight_setting < 0):
        raise ConfigurationError(f"{where}: weight must be a number of at least 0")
    response_headers = {
        "x-litellm-model-group": deployment.model_name,
        "x-litellm-model-id": model_id,
        "x-litellm-model-api-base": shown,
    }
    return Target(
        model_group=deployment.model_name,
        model=params.model,
        provider=provider,
        wire=wire,
        upstream_model=name,
        api_base=shown,
        origin=origin_of(next(iter(urls.values()))),
        urls=urls,
        headers=headers,
        model_id=model_id,
        base_model=deployment.base_model,
        custom_prices=deployment.custom_prices(),
        timeout_s=params.timeout,
        num_retries=deployment_retries(params.model_extra or {}, deployment.model_name),
        weight_setting=None if weight_setting is None else float(weight_setting),
        rpm=params.rpm,
        tpm=params.tpm,
        mode=deployment.model_info.mode,
        response_headers=response_headers,
        paths={ct: path_and_query(url) for ct, url in urls.items()},
        header_block="".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1"),
        answer_lines=header_lines({"Content-Type": JSON, **response_headers}),
        native=native,
    )


def deployment_retries(extra: Mapping[str, Any], model_name: str) -> int | None:
    if extra.get("num_retries") is None:
        return None
    return bounded_count(extra["num_retries"], f"model_list {model_name!r}: litellm_params.num_retries", MAX_RETRIES, ConfigurationError)


class Router:
    """model_name -> its targets, chosen by the routing strategy (strategy.py). Under simple-shuffle,
    deployments without weights take turns and weighted ones are drawn in proportion; least-busy
    takes the one with the fewest calls in flight. Resting deployments (cooldown.py) and those a
    call already tried are passed over while another is available. A name no model_name equals may
    match a wildcard deployment (wildcard.py)."""

    def __init__(self, targets: Sequence[Target], rng: random.Random | None = None,
                 wildcards: WildcardRoutes | None = None, *, strategy: str = SIMPLE_SHUFFLE,
                 cooldowns: Cooldowns | None = None, policy: RouterPolicy | None = None) -> None:
        self.wildcards = wildcards
        self.policy = policy or RouterPolicy()
        groups: dict[str, list[Target]] = {}
        for target in targets:
            groups.setdefault(target.model_group, []).append(target)
        self._groups = groups
        self._rng = rng or random.Random()
        self.least_busy = strategy == LEAST_BUSY
        self.cooldowns = cooldowns
        self.in_flight: dict[str, int] = {}  # model_id -> calls in flight (kept by the relay under least-busy)
        self._turns: dict[str, Iterator[Target]] = {
            name: itertools.cycle(group) for name, group in groups.items() if shuffle_weights(group) is None
        }
        self.model_names: list[str] = sorted(groups)
        self._unknown_hint = ", ".join(self.model_names)

    @classmethod
    def from_deployments(cls, deployments: Sequence[Deployment], env: Mapping[str, str], *,
                         strategy: str = SIMPLE_SHUFFLE, cooldowns: Cooldowns | None = None) -> Router:
        exact = [d for d in deployments if not is_pattern(d.model_name)]
        patterns = [d for d in deployments if is_pattern(d.model_name)]
        wildcards = WildcardRoutes(patterns, lambda d: build_target(d, env), deployment_id) if patterns else None
        return cls([build_target(d, env) for d in exact], wildcards=wildcards, strategy=strategy, cooldowns=cooldowns)

    @classmethod
    def from_config(cls, config: ProxyConfig, env: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> Router:
        """The router the config's model_list, litellm_settings and router_settings describe."""
        policy = policy_from_config(config.litellm_settings, (config.model_extra or {}).get("router_settings"))
        cooldowns = Cooldowns(policy.allowed_fails, policy.cooldown_time_s, clock)
        router = cls.from_deployments(config.model_list, env, strategy=policy.routing_strategy, cooldowns=cooldowns)
        router.policy = policy
        for kind, table in (("fallbacks", policy.fallbacks), ("context_window_fallbacks", policy.context_window_fallbacks)):
            for name in {*table, *(g for groups in table.values() for g in groups)}:
                if not router.knows(name):
                    raise ConfigurationError(f"router_settings.{kind}: {name!r} is no model_name of the model_list")
        return router

    def deployment(self, model_id: str) -> Target | None:
        """The configured deployment with this model_id (a wildcard's are made per call: None)."""
        return next((t for group in self._groups.values() for t in group if t.model_id == model_id), None)

    def knows(self, model_group: str) -> bool:
        return model_group in self._groups or (self.wildcards is not None and self.wildcards.match(model_group) is not None)

    def targets(self, model_group: str) -> list[Target]:
        return self._groups.get(model_group, [])

    def all_targets(self) -> list[Target]:
        """Every deployment as configured (a wildcard one with its `*`): pools and timeouts are
        per deployment."""
        templates = self.wildcards.templates if self.wildcards else []
        return [t for group in self._groups.values() for t in group] + templates  # type: ignore[operator]

    def pick(self, model_group: str, allows: Callable[[str], bool] | None = None,
             tried: Collection[str] = ()) -> Target:
        """A target of `model_group`, preferably none whose model_id is in `tried`. An unknown
        name's error lists the models `allows` (the caller's key) accepts: a key limited to a few
        models learns no other model's name."""
        group = self._groups.get(model_group)
        if group is None and self.wildcards is not None:
            target = self.wildcards.target(model_group)
            if target is not None:
                return target  # type: ignore[return-value]
        if group is None:
            hint = self._unknown_hint if allows is None else ", ".join(filter(allows, self.model_names))
            raise InvalidRequest(
                f"Invalid model name passed in model={model_group}. Call `/v1/models` to view available models for your key. "
                f"Available models: [{hint}]",
                param="model", code="invalid_model",
            )
        if len(group) == 1:
            return group[0]
        cooldowns = self.cooldowns
        if not tried and not self.least_busy and (cooldowns is None or not cooldowns.any_resting()):
            turns = self._turns.get(model_group)
            return next(turns) if turns is not None else simple_shuffle(group, self._rng)
        candidates = [t for t in group if t.model_id not in tried and not (cooldowns and cooldowns.resting(t.model_id))]
        if not candidates:  # every deployment rests or was tried: LiteLLM then calls one anyway
            candidates = [t for t in group if t.model_id not in tried] or group
        if self.least_busy:
            return least_busy(candidates, self.in_flight, self._rng)
        return simple_shuffle(candidates, self._rng)
