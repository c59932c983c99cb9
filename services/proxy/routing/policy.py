"""The router's settings and its decisions after a failed attempt: retry, fall back, or give up
(LiteLLM's `num_retries`, `fallbacks`, `context_window_fallbacks`, `allowed_fails`,
`cooldown_time`, `routing_strategy`). Pure: read once at start-up, asked per failed attempt."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from time import time
from typing import Any

from services.proxy.errors import ConfigurationError, InvalidRequest
from services.proxy.routing.strategy import SIMPLE_SHUFFLE, STRATEGIES

DEFAULT_ALLOWED_FAILS = 3  # LiteLLM's defaults
DEFAULT_COOLDOWN_TIME_S = 5.0
MAX_RETRIES = 10  # a request's num_retries is bounded: each retry is an upstream call
MAX_FALLBACKS = 10
MAX_REQUEST_TIMEOUT_S = 3600.0
INITIAL_RETRY_DELAY_S, MAX_RETRY_DELAY_S = 0.5, 8.0  # LiteLLM's backoff when no other deployment can take a retry
MAX_RETRY_AFTER_S = 60.0  # an upstream's Retry-After is waited for up to this (LiteLLM's bound); longer: the backoff

# How providers word a prompt too long for the model (OpenAI, Azure, Anthropic, Bedrock, Gemini).
_CONTEXT_WINDOW = re.compile(
    r"context_length_exceeded|maximum context length|context window|prompt is too long|input is too long"
    r"|too many tokens|exceeds the maximum number of tokens|input token count",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    num_retries: int = 0
    timeout_s: float | None = None  # router_settings.timeout: every deployment without its own
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allowed_fails: int = DEFAULT_ALLOWED_FAILS
    cooldown_time_s: float = DEFAULT_COOLDOWN_TIME_S
    routing_strategy: str = SIMPLE_SHUFFLE

    @property
    def plain(self) -> bool:
        """One attempt, nowhere to fall back: the relay's single-attempt path."""
        return self.num_retries == 0 and not self.fallbacks and not self.context_window_fallbacks


def policy_from_config(litellm_settings: Mapping[str, Any], router_settings: Mapping[str, Any] | None) -> RouterPolicy:
    """router_settings wins over litellm_settings, as in LiteLLM's proxy."""
    merged = {**litellm_settings, **(router_settings or {})}
    strategy = merged.get("routing_strategy") or SIMPLE_SHUFFLE
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"router_settings.routing_strategy {strategy!r} is not supported; use one of {', '.join(STRATEGIES)}")
    timeout = merged.get("timeout")
    try:
        return RouterPolicy(
            num_retries=bounded_count(merged.get("num_retries"), "num_retries", MAX_RETRIES, ConfigurationError),
            timeout_s=float(timeout) if timeout is not None else None,
            fallbacks=_fallback_map(merged.get("fallbacks"), "fallbacks"),
            context_window_fallbacks=_fallback_map(merged.get("context_window_fallbacks"), "context_window_fallbacks"),
            allowed_fails=bounded_count(merged.get("allowed_fails", DEFAULT_ALLOWED_FAILS), "allowed_fails", 10**6, ConfigurationError),
            cooldown_time_s=float(merged.get("cooldown_time", DEFAULT_COOLDOWN_TIME_S)),
            routing_strategy=strategy,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"router_settings: {exc}") from exc


def bounded_count(value: Any, name: str, most: int, error: type[Exception]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise error(f"{name} must be an integer from 0 to {most}")
    return value


def _fallback_map(value: Any, name: str) -> dict[str, tuple[str, ...]]:
    """LiteLLM's shape: a list of {model_group: [fallback groups]} (a single mapping is accepted)."""
    if value is None:
        return {}
    entries = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list):
        raise ConfigurationError(f"{name} must be a list of {{model_name: [fallback model_names]}}")
    result: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{name} must be a list of {{model_name: [fallback model_names]}}")
        for group, targets in entry.items():
            targets = [targets] if isinstance(targets, str) else targets
            if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
                raise ConfigurationError(f"{name}.{group} must be a list of model_names")
            result[str(group)] = tuple(targets)
    return result


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One call's retries and fallbacks: the policy, with the request's own settings on top."""

    num_retries: int
    fallbacks: tuple[str, ...]  # groups tried, in order, after the requested one fails
    context_window_fallbacks: tuple[str, ...]
    retries_asked: bool = False  # num_retries came from the request: it wins over a deployment's own

    def retries_for(self, deployment_retries: int | None) -> int:
        """A group's retries: the request's, else the litellm_params.num_retries of the group's
        first deployment to fail, else the config's."""
        return self.num_retries if self.retries_asked or deployment_retries is None else deployment_retries


def plan_for(policy: RouterPolicy, model_group: str, body: Mapping[str, Any],
             allows: Callable[[str], bool] | None = None) -> CallPlan:
    """The request may set `num_retries`, `fallbacks` (a list of model_names) and
    `context_window_fallback_dict` ({model_name: fallback}), as LiteLLM's proxy reads them. The
    config's fallbacks are kept only where `allows` (the caller's key) does; the request's are
    returned as asked, for the caller to check."""
    retries = body.get("num_retries")
    retries_asked = retries is not None
    if retries is None:
        retries = policy.num_retries
    retries = bounded_count(retries, "num_retries", MAX_RETRIES, InvalidRequest)
    fallbacks = body.get("fallbacks")
    if fallbacks is None:
        chosen = tuple(filter(allows, policy.fallbacks.get(model_group, ())))
    elif isinstance(fallbacks, list) and all(isinstance(f, str) and f for f in fallbacks) and len(fallbacks) <= MAX_FALLBACKS:
        chosen = tuple(fallbacks)
    else:
        raise InvalidRequest(f"fallbacks must be a list of at most {MAX_FALLBACKS} model names", param="fallbacks")
    window = tuple(filter(allows, policy.context_window_fallbacks.get(model_group, ())))
    asked = body.get("context_window_fallback_dict")
    if isinstance(asked, dict) and isinstance(asked.get(model_group), str):
        window = (asked[model_group],)
    elif asked is not None and not isinstance(asked, dict):
        raise InvalidRequest("context_window_fallback_dict must be an object", param="context_window_fallback_dict")
    return CallPlan(retries, tuple(f for f in chosen if f != model_group), window, retries_asked)


def request_timeout(value: Any) -> float | None:
    """A request's `timeout` (seconds per attempt, as LiteLLM reads it), bounded; null: the deployment's."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_REQUEST_TIMEOUT_S:
        raise InvalidRequest(f"timeout must be a number of seconds above 0 and at most {MAX_REQUEST_TIMEOUT_S:g}", param="timeout")
    return float(value)


def retryable(status: int) -> bool:
    """The failures LiteLLM retries: rate limits, timeouts, server errors (the relay reports an
    unreachable upstream as 502 and a timeout as 504). Never a 4xx the request itself caused."""
    return status in (408, 429) or status >= 500


def retry_delay_s(retries_done: int) -> float:
    """The pause before retrying on a deployment that already failed this call (the group has no
    other): 0.5 s, doubling, at most 8 s. A retry on another deployment goes at once."""
    return min(INITIAL_RETRY_DELAY_S * 2 ** max(retries_done - 1, 0), MAX_RETRY_DELAY_S)


def retry_delay_after(retries_done: int, retry_after: float | None) -> float:
    """The pause before a retry on a deployment that already failed: the Retry-After it asked for
    when that is above 0 and at most 60 s, else the backoff."""
    if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER_S:
        return retry_after
    return retry_delay_s(retries_done)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """An answer's `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an HTTP date), as
    LiteLLM reads them; None when absent or unreadable."""
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return parsedate_to_datetime(value).timestamp() - time()
    except (TypeError, ValueError, OverflowError):
        return None


def context_window_exceeded(status: int, message: str) -> bool:
    return status in (400, 413) and _CONTEXT_WINDOW.search(message) is not None


def falls_back(status: int, message: str) -> bool:
    """Another model group is tried after a failure it might not share: not a request the upstream
    called malformed (that request would fail everywhere), unless its prompt was too long."""
    return retryable(status) or status in (401, 403, 404) or context_window_exceeded(status, message)
