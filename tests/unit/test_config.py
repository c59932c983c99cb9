"""The LiteLLM config file: parsing, os.environ/ references, clear errors."""

from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_env_references_are_resolved():
    """os.environ/NAME takes the variable's value."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K"}}]}, {"K": "secret"})
    assert config.model_list[0].litellm_params.api_key == "secret"


def test_missing_env_variable_names_it():
    """A reference to an unset variable fails with the variable's name and where it was used."""
    with pytest.raises(ConfigError, match="model_list\\[0\\].litellm_params.api_key: environment variable NOPE is not set"):
        parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "x", "api_key": "os.environ/NOPE"}}]}, {})


def test_environment_variables_section_supplies_defaults():
    """The file's environment_variables feed references; the real environment wins."""
    raw = {"environment_variables": {"MK": "from-file"}, "general_settings": {"master_key": "os.environ/MK"}}
    assert parse_config(raw, {}).general_settings.master_key == "from-file"
    assert parse_config(raw, {"MK": "from-env"}).general_settings.master_key == "from-env"


def test_custom_prices_are_exact_decimals():
    """Per-deployment prices become Decimals from their text, with no float rounding."""
    raw = {"model_list": [{"model_name": "m", "litellm_params": {"model": "x", "input_cost_per_token": 0.0000001, "output_cost_per_token": "2e-07"}}]}
    prices = parse_config(raw, {}).model_list[0].custom_prices()
    assert prices == {"input_cost_per_token": Decimal("1e-07"), "output_cost_per_token": Decimal("2e-07")}


def test_base_model_from_model_info_or_params():
    """base_model may sit in model_info (chat) or litellm_params (the seed's image example)."""
    raw = {"model_list": [
        {"model_name": "a", "litellm_params": {"model": "azure/chatgpt-v-2"}, "model_info": {"base_model": "azure/gpt-4-1106-preview"}},
        {"model_name": "b", "litellm_params": {"model": "azure/dall-e-3-test", "base_model": "dall-e-3"}},
    ]}
    config = parse_config(raw, {})
    assert [d.base_model for d in config.model_list] == ["azure/gpt-4-1106-preview", "dall-e-3"]


def test_bad_yaml_names_file_and_line(tmp_path):
    """Unreadable YAML stops with the file and the line."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list:\n  - model_name: x\n   bad: [\n")
    with pytest.raises(ConfigError, match=f"{path} line 3"):
        load_config(path, {})


def test_default_config_loads_offline():
    """The shipped config needs no provider key and serves llama3 as Groq's llama3-8b-8192."""
    config = load_config(ROOT / "config" / "config.yaml", {})
    llama3 = [d for d in config.model_list if d.model_name == "llama3"][0]
    assert (llama3.litellm_params.model, llama3.litellm_params.api_base) == ("groq/llama3-8b-8192", "http://127.0.0.1:4010/v1")
    assert config.general_settings.master_key == "sk-1234"
