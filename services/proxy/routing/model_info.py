"""The bodies of LiteLLM's model routes, from the config's model_list and the current catalog.
Pure. /model/info: each deployment's `model_name`, its `litellm_params` without credentials,
and its `model_info` (the config's, then the price map's entry for the model it is priced as,
as LiteLLM's get_model_info gives it). /model_group/info: one `ModelGroupInfo` per model name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from services.proxy.errors import ConfigurationError
from services.proxy.routing.router import deployment_id, split_provider
from shared.config import Deployment
from shared.pricing import CUSTOM, Catalog, resolve_entry

# litellm_params that are credentials: never shown (LiteLLM strips them the same way).
SECRET_PARAMS = frozenset({
    "api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "vertex_credentials",
    "azure_ad_token", "client_secret", "tenant_id", "client_id", "azure_username", "azure_password",
})
# What LiteLLM's ModelGroupInfo holds, with its defaults.
GROUP_DEFAULTS: Mapping[str, Any] = {
    "max_input_tokens": None, "max_output_tokens": None, "input_cost_per_token": None,
    "output_cost_per_token": None, "input_cost_per_pixel": None, "mode": "chat", "tpm": None, "rpm": None,
    "itpm": None, "otpm": None, "supports_parallel_function_calling": False, "supports_vision": False,
    "supports_web_search": False, "supports_url_context": False, "supports_reasoning": False,
    "supports_function_calling": False, "supported_reasoning_efforts": None,
    "configurable_clientside_auth_params": None,
}
# OpenAI's chat parameters, which every OpenAI-compatible deployment passes on.
CHAT_PARAMS = (
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens", "max_completion_tokens",
    "modalities", "prediction", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
    "temperature", "top_p", "tools", "tool_choice", "function_call", "functions", "max_retries",
    "extra_headers", "parallel_tool_calls", "audio", "response_format", "user",
)
ANTHROPIC_PARAMS = ("stream", "stop", "temperature", "top_p", "max_tokens", "max_completion_tokens", "tools",
                    "tool_choice", "extra_headers", "parallel_tool_calls", "response_format", "user", "metadata")
EMBEDDING_PARAMS = ("user", "encoding_format", "dimensions")
IMAGE_PARAMS = ("n", "quality", "response_format", "size", "style", "user")


def provider_of(deployment: Deployment) -> str:
    params = deployment.litellm_params
    try:
        return split_provider(params.model, params.custom_llm_provider)[0]
    except ConfigurationError:
        return params.model.split("/", 1)[0]


def priced_entry(catalog: Catalog, deployment: Deployment) -> tuple[str | None, Mapping[str, Any]]:
    """(the price map's key, its entry) for what the deployment is priced as; custom prices
    are their own entry, key None."""
    custom = deployment.custom_prices()
    if custom:
        return None, custom
    name = resolve_entry(catalog, model=deployment.litellm_params.model, base_model=deployment.base_model,
                         custom_llm_provider=provider_of(deployment))
    if name is None or name == CUSTOM:
        return None, {}
    return name, catalog.entries[name]


def supported_params(provider: str, mode: str | None) -> list[str]:
    if mode == "embedding":
        return list(EMBEDDING_PARAMS)
    if mode == "image_generation":
        return list(IMAGE_PARAMS)
    return list(ANTHROPIC_PARAMS if provider == "anthropic" else CHAT_PARAMS)


def deployment_info(deployment: Deployment, catalog: Catalog) -> dict[str, Any]:
    """One /model/info row."""
    params = {k: v for k, v in deployment.litellm_params.model_dump(exclude_none=True).items() if k not in SECRET_PARAMS}
    key, entry = priced_entry(catalog, deployment)
    provider = provider_of(deployment)
    configured = deployment.model_info.model_dump(exclude_none=True)
    info: dict[str, Any] = {"key": key or deployment.litellm_params.model, "litellm_provider": provider, **dict(entry)}
    info.update(configured)
    info.update(id=deployment_id(deployment), db_model=False, base_model=deployment.base_model)
    info.setdefault("mode", "chat")
    info["supported_openai_params"] = supported_params(provider, info["mode"])
    return {"model_name": deployment.model_name, "litellm_params": params, "model_info": info}


def model_group_info(name: str, deployments: Sequence[Deployment], catalog: Catalog) -> dict[str, Any]:
    """One ModelGroupInfo: the group's providers, and each field from the first deployment that
    has it; tpm and rpm are the deployments' sums."""
    group: dict[str, Any] = {"model_group": name, "providers": [], **GROUP_DEFAULTS}
    tpm = rpm = None
    mode_set = False
    for deployment in deployments:
        provider = provider_of(deployment)
        if provider not in group["providers"]:
            group["providers"].append(provider)
        _, entry = priced_entry(catalog, deployment)
        for field in ("max_input_tokens", "max_output_tokens", "input_cost_per_token", "output_cost_per_token",
                      "input_cost_per_pixel"):
            if group[field] is None and isinstance(entry.get(field), Decimal):
                group[field] = entry[field]
        for field, value in entry.items():
            if field.startswith("supports_") and field in group and value is True:
                group[field] = True
        mode = deployment.model_info.mode or entry.get("mode")
        if mode and not mode_set:
            group["mode"], mode_set = mode, True
        params = deployment.litellm_params
        tpm = params.tpm + (tpm or 0) if params.tpm is not None else tpm
        rpm = params.rpm + (rpm or 0) if params.rpm is not None else rpm
    group["tpm"], group["rpm"] = tpm, rpm
    group["supported_openai_params"] = supported_params(group["providers"][0] if group["providers"] else "openai", group["mode"])
    return group


def model_card(name: str) -> dict[str, Any]:
    """One /v1/models entry, as LiteLLM writes it."""
    return {"id": name, "object": "model", "created": 1677610602, "owned_by": "openai"}


