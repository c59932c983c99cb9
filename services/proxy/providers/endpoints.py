"""A deployment on a provider with its own API, from its litellm_params: the NativeWire its Target
carries. Called once per deployment at start-up (routing/router.py's build_target)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.proxy.errors import ConfigurationError
from services.proxy.providers.native import NativeWire


def native_wire(provider: str, upstream_model: str, params: Any, env: Mapping[str, str], where: str) -> NativeWire:
    if provider == "gemini":
        from services.proxy.providers.gemini import GeminiWire

        return GeminiWire(upstream_model, params.api_base, params.api_key or env.get("GEMINI_API_KEY", ""))
    if provider == "bedrock":
        from services.proxy.providers.bedrock import bedrock_wire

        return bedrock_wire(upstream_model, params, env, where)
    if provider in ("cohere", "cohere_chat"):
        from services.proxy.providers.cohere import CohereWire

        return CohereWire(upstream_model, params.api_base, params.api_key or env.get("COHERE_API_KEY") or env.get("CO_API_KEY", ""))
    if provider == "vertex_ai":
        from services.proxy.providers.vertex import vertex_wire

        return vertex_wire(upstream_model, params, env, where)
    raise ConfigurationError(f"{where}: no native wire for provider {provider!r}")
