"""The LiteLLM-style config file: model_list / litellm_params / model_info / general_settings,
with `os.environ/NAME` values resolved. Loading is pure apart from reading the file once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "os.environ/"

# Price fields a deployment may set on litellm_params or model_info (LiteLLM's names).
PRICE_FIELDS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "output_cost_per_reasoning_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "input_cost_per_image",
    "output_cost_per_image",
    "input_cost_per_pixel",
    "output_cost_per_pixel",
    "input_cost_per_character",
    "input_cost_per_second",
    "output_cost_per_second",
)


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the problem."""


class LiteLLMParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    base_model: str | None = None
    timeout: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    custom_llm_provider: str | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    id: str | None = None
    base_model: str | None = None
    mode: str | None = None


class Deployment(BaseModel):
    """One entry of model_list: a public model name served by one upstream deployment."""

    model_config = ConfigDict(frozen=True, extra="allow")

    model_name: str
    litellm_params: LiteLLMParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)

    @property
    def base_model(self) -> str | None:
        # LiteLLM's order (_get_base_model_from_metadata): litellm_params first, then model_info.
        return self.litellm_params.base_model or self.model_info.base_model

    def custom_prices(self) -> dict[str, Decimal]:
        """Per-deployment prices from litellm_params or model_info, as exact Decimals."""
        prices: dict[str, Decimal] = {}
        for source in (self.model_info.model_extra or {}, self.litellm_params.model_extra or {}):
            for name in PRICE_FIELDS:
                if source.get(name) is not None:
                    prices[name] = Decimal(str(source[name]))
        return prices


class GeneralSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    master_key: str | None = None
    max_request_size_mb: float | None = None
    store_prompts_in_spend_logs: bool = False


class ProxyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    model_list: list[Deployment] = Field(default_factory=list)
    general_settings: GeneralSettings = Field(default_factory=GeneralSettings)
    litellm_settings: dict[str, Any] = Field(default_factory=dict)
    environment_variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("model_list", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    def model_names(self) -> list[str]:
        return sorted({d.model_name for d in self.model_list})


def resolve_env_refs(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace every "os.environ/NAME" string with the variable's value, recursively."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in env:
            raise ConfigError(f"{where or 'config'}: environment variable {name} is not set")
        return env[name]
    if isinstance(value, dict):
        return {k: resolve_env_refs(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_config(raw: Mapping[str, Any] | None, env: Mapping[str, str], source: str = "config") -> ProxyConfig:
    raw = dict(raw or {})
    # environment_variables in the file feed os.environ/ references, as in LiteLLM.
    merged_env = {**{str(k): str(v) for k, v in (raw.get("environment_variables") or {}).items()}, **env}
    try:
        return ProxyConfig.model_validate(resolve_env_refs(raw, merged_env))
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{source}: {location}: {first['msg']}") from exc


def load_config(path: Path, env: Mapping[str, str] | None = None) -> ProxyConfig:
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return parse_config(raw, env, str(path))
