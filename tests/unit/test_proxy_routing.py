"""Deployments become ready-to-call targets; the router balances and names the models it knows."""

import random
from decimal import Decimal

import pytest

from services.proxy.errors import ConfigurationError, InvalidRequest
from services.proxy.routing.router import CHAT, EMBEDDING, Router, build_target, split_provider, strip_query
from shared.config import parse_config


def deployments(*entries):
    return parse_config({"model_list": list(entries)}, {}).model_list


def entry(name, model, **params):
    info = params.pop("model_info", None)
    raw = {"model_name": name, "litellm_params": {"model": model, **params}}
    if info:
        raw["model_info"] = info
    return raw


def test_groq_without_api_base_goes_to_groqs_openai_endpoint():
    """groq/<name> is called at Groq's OpenAI-compatible URL with a Bearer key and the bare name."""
    target = build_target(deployments(entry("llama3", "groq/llama3-8b-8192", api_key="gk"))[0], {})
    assert target.url(CHAT) == "https://api.groq.com/openai/v1/chat/completions"
    assert target.headers["Authorization"] == "Bearer gk"
    assert target.upstream_model == "llama3-8b-8192"
    assert target.provider == "groq"
    assert target.api_base == "https://api.groq.com/openai/v1"


def test_openai_with_api_base_appends_the_route_to_it():
    """openai/<name> with an api_base is any OpenAI-compatible server."""
    target = build_target(deployments(entry("m", "openai/gpt-4o-mini", api_base="http://127.0.0.1:4010/v1/"))[0], {})
    assert target.url(EMBEDDING) == "http://127.0.0.1:4010/v1/embeddings"
    assert target.origin == "http://127.0.0.1:4010"


def test_azure_uses_the_deployment_path_api_version_and_api_key_header():
    """azure/<deployment> calls /openai/deployments/<deployment>/... with api-version and api-key."""
    target = build_target(deployments(entry("gpt", "azure/chatgpt-v-2", api_base="https://r.openai.azure.com/",
                                            api_key="ak", api_version="2023-07-01-preview"))[0], {})
    assert target.url(CHAT) == "https://r.openai.azure.com/openai/deployments/chatgpt-v-2/chat/completions?api-version=2023-07-01-preview"
    assert target.headers["api-key"] == "ak"
    assert "Authorization" not in target.headers
    assert target.response_headers["x-litellm-model-api-base"] == "https://r.openai.azure.com/"


def test_anthropic_goes_to_the_messages_api_with_its_headers():
    """anthropic/<name> is called at /v1/messages with x-api-key and anthropic-version."""
    target = build_target(deployments(entry("claude", "anthropic/claude-3-5-sonnet-20241022"))[0], {"ANTHROPIC_API_KEY": "sk-ant"})
    assert target.url(CHAT) == "https://api.anthropic.com/v1/messages"
    assert target.headers["x-api-key"] == "sk-ant"
    assert target.headers["anthropic-version"] == "2023-06-01"


def test_ollama_is_called_through_its_openai_api():
    """ollama/<name> uses Ollama's /v1 OpenAI-compatible API."""
    target = build_target(deployments(entry("local", "ollama/llama3", api_base="http://localhost:11434"))[0], {})
    assert target.url(CHAT) == "http://localhost:11434/v1/chat/completions"


def test_hosted_vllm_without_api_base_is_a_configuration_error():
    """A provider with no public endpoint needs an api_base; the error names the entry."""
    with pytest.raises(ConfigurationError, match="'vllm'.*api_base"):
        build_target(deployments(entry("vllm", "hosted_vllm/meta-llama/Llama-3-8B"))[0], {})


def test_split_provider_keeps_slashes_in_the_model_name():
    """Only the first segment is the provider."""
    assert split_provider("together_ai/meta-llama/Llama-3-8b-chat-hf") == ("together_ai", "meta-llama/Llama-3-8b-chat-hf")
    assert split_provider("gpt-4o") == ("openai", "gpt-4o")
    assert split_provider("claude-3-haiku-20240307") == ("anthropic", "claude-3-haiku-20240307")


def test_model_api_base_header_has_no_query_string():
    """x-litellm-model-api-base never shows a query string (it may carry secrets)."""
    assert strip_query("https://h.example/v1?key=secret") == "https://h.example/v1"
    target = build_target(deployments(entry("m", "openai/x", api_base="https://h.example/v1?key=secret"))[0], {})
    assert target.api_base == "https://h.example/v1"
    assert target.url(CHAT) == "https://h.example/v1/chat/completions?key=secret"


def test_equal_deployments_take_turns():
    """Two deployments of one model_name share the calls in turn."""
    router = Router.from_deployments(deployments(entry("m", "openai/a", api_base="http://a/v1"),
                                                 entry("m", "openai/b", api_base="http://b/v1")), {})
    assert [router.pick("m").upstream_model for _ in range(4)] == ["a", "b", "a", "b"]


def test_weighted_deployments_are_drawn_in_proportion():
    """Unequal weights (rpm) draw at random in proportion to them."""
    targets = [build_target(d, {}) for d in deployments(entry("m", "openai/a", api_base="http://a/v1", rpm=900),
                                                        entry("m", "openai/b", api_base="http://b/v1", rpm=100))]
    router = Router(targets, rng=random.Random(7))
    picks = [router.pick("m").upstream_model for _ in range(2000)]
    assert 1700 < picks.count("a") < 1900


def test_unknown_model_error_lists_the_available_ones():
    """Asking for a model that is not configured is a 400 naming the configured ones."""
    router = Router.from_deployments(deployments(entry("llama3", "groq/x", api_key="k"), entry("gpt-4o", "gpt-4o")), {})
    with pytest.raises(InvalidRequest) as error:
        router.pick("gpt-5")
    assert error.value.status == 400
    assert "Available models: [gpt-4o, llama3]" in error.value.message


def test_unknown_model_error_lists_only_what_the_caller_may_use():
    """A key limited to some models learns only their names from an unknown model's error."""
    router = Router.from_deployments(deployments(entry("llama3", "groq/x", api_key="k"), entry("gpt-4o", "gpt-4o"),
                                                 entry("secret-model", "gpt-4o")), {})
    with pytest.raises(InvalidRequest) as error:
        router.pick("gpt-5", {"llama3", "gpt-4o"}.__contains__)
    assert error.value.message.endswith("Available models: [gpt-4o, llama3]")


def test_custom_prices_and_base_model_travel_with_the_target():
    """Per-deployment prices are exact Decimals; base_model comes from model_info."""
    target = build_target(deployments(entry("m", "azure/dep", api_base="https://r.openai.azure.com", input_cost_per_token=1.5e-07,
                                            model_info={"base_model": "azure/gpt-4-1106-preview", "id": "dep-1"}))[0], {})
    assert target.custom_prices == {"input_cost_per_token": Decimal("1.5e-07")}
    assert target.base_model == "azure/gpt-4-1106-preview"
    assert target.model_id == "dep-1"
