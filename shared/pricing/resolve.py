"""Which catalog entry prices a call.

The order, as in LiteLLM: the deployment's own custom prices ("custom"); else its `base_model`;
else the model named in the upstream's response; else the deployment's model. A `base_model`
that is set but unknown leaves the call unpriced rather than falling through: it exists because
the other names are known to be wrong (Azure answers "gpt-4" for a gpt-4-1106-preview deployment).
A `base_model` is the user's statement of intent, so the deployment's provider does not filter it.

A name is looked up the way LiteLLM's get_model_info does: "provider/name" first (a provider's
own list price, e.g. "azure/gpt-4o"), then the name as given, then with leading path segments
stripped one at a time ("openai/gpt-4o" -> "gpt-4o", "bedrock/converse/anthropic.claude-…" ->
"anthropic.claude-…"), each again provider-qualified first. Case is ignored when the exact case
is absent. When the provider is known, an entry of another provider never matches: Azure's call
is not priced from OpenAI's entry just because the response says "gpt-4"."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from shared.pricing.catalog import Catalog

CUSTOM = "custom"

# LiteLLM tags entries with variants of one provider; a call to the provider matches them all.
_PROVIDER_ALIASES = {
    "bedrock_converse": "bedrock",
    "cohere_chat": "cohere",
    "text-completion-openai": "openai",
    "azure_text": "azure",
    "vertex_ai_beta": "vertex_ai",
    "anthropic_text": "anthropic",
    "ollama_chat": "ollama",
}

# Prefixes LiteLLM users put on model names for providers the catalog may hold no entry for
# (self-hosted, routers); recognising them lets "hosted_vllm/x" be looked up as "x".
_WELL_KNOWN_PROVIDERS = frozenset(
    {
        "openai", "azure", "azure_ai", "anthropic", "bedrock", "sagemaker", "vertex_ai", "gemini",
        "groq", "mistral", "cohere", "deepseek", "together_ai", "fireworks_ai", "perplexity", "xai",
        "openrouter", "hosted_vllm", "vllm", "ollama", "huggingface", "deepinfra", "cerebras",
        "databricks", "watsonx", "replicate", "cloudflare", "nvidia_nim", "ai21", "voyage",
        "lm_studio", "dashscope", "moonshot", "sambanova", "nebius", "novita", "custom_openai",
    }
)

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_INDEX = "resolve.index"


def provider_family(provider: str) -> str:
    """"vertex_ai-language-models" -> "vertex_ai", "bedrock_converse" -> "bedrock"."""
    provider = provider.strip().lower()
    provider = _PROVIDER_ALIASES.get(provider, provider)
    return provider.split("-", 1)[0]


def image_dimensions(size: str | None) -> tuple[int, int] | None:
    """"1024x1024" -> (1024, 1024); None for "auto" or anything else that is not W x H."""
    match = _SIZE.match(size) if size else None
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True, slots=True)
class _NameIndex:
    exact: Mapping[str, object]
    lowercase: Mapping[str, str]
    family: Mapping[str, str | None]  # entry name -> provider family (None: entry names none)
    providers: frozenset[str]

    def find(self, name: str) -> str | None:
        return name if name in self.exact else self.lowercase.get(name.lower())


def _index(catalog: Catalog) -> _NameIndex:
    index = catalog.memo.get(_INDEX)
    if index is None:
        family = {}
        for name, entry in catalog.entries.items():
            provider = entry.get("litellm_provider")
            family[name] = provider_family(provider) if isinstance(provider, str) else None
        lowercase: dict[str, str] = {}
        for name in catalog.entries:
            lowercase.setdefault(name.lower(), name)
        providers = _WELL_KNOWN_PROVIDERS | {
            p for e in catalog.entries.values() if isinstance(p := e.get("litellm_provider"), str)
        }
        index = _NameIndex(catalog.entries, lowercase, family, frozenset(providers))
        catalog.memo[_INDEX] = index
    return index


def call_provider(catalog: Catalog, model: str, custom_llm_provider: str | None) -> str | None:
    """The call's provider: as the deployment states it, else the model's known prefix."""
    if custom_llm_provider:
        return custom_llm_provider.strip().lower()
    head, slash, _ = model.partition("/")
    if slash and head.lower() in _index(catalog).providers:
        return head.lower()
    return None


def resolve_entry(
    catalog: Catalog,
    *,
    model: str,
    base_model: str | None = None,
    response_model: str | None = None,
    custom_llm_provider: str | None = None,
    has_custom_prices: bool = False,
    image_size: str | None = None,
    image_quality: str | None = None,
) -> str | None:
    """The name of the catalog entry that prices the call, CUSTOM, or None when nothing does.

    For image calls, pass `image_size` ("1024x1024") and `image_quality` ("hd"): LiteLLM keys
    those prices as "<quality>/<size>/<model>" and "<size>/<model>" ("1024-x-1024/dall-e-2",
    "hd/1024-x-1792/dall-e-3"); the model's plain entry is the fallback."""
    if has_custom_prices:
        return CUSTOM
    index = _index(catalog)
    provider = call_provider(catalog, model, custom_llm_provider)
    if base_model:
        return _resolve_base_model(catalog, index, base_model.strip(), provider, image_size, image_quality)
    family = provider_family(provider) if provider else None
    for source in (response_model, model):
        if not source:
            continue
        for candidate in _candidates(source, provider, image_size, image_quality):
            found = index.find(candidate)
            if found is not None and (family is None or index.family[found] in (None, family)):
                return found
    return None


def _resolve_base_model(catalog: Catalog, index: _NameIndex, base_model: str, call_provider_name: str | None,
                        image_size: str | None, image_quality: str | None) -> str | None:
    """`base_model` names the model the user means, whatever provider the deployment calls through
    (an `openai/...` gateway serving claude-sonnet-4-5 is priced as Anthropic's model). Its own
    provider prefix, when it has one, decides; a bare name is tried under the call's provider
    first (Azure's own list price for "gpt-4o"), then as given, from any provider."""
    own = call_provider(catalog, base_model, None)
    provider = own or call_provider_name
    family = provider_family(own) if own else None
    for candidate in _candidates(base_model, provider, image_size, image_quality):
        found = index.find(candidate)
        if found is not None and (family is None or index.family[found] in (None, family)):
            return found
    return None


def _candidates(name: str, provider: str | None, size: str | None, quality: str | None) -> Iterator[str]:
    bare_names = list(_bare_names(name.strip()))
    for prefix in _image_prefixes(size, quality):
        for bare in bare_names:
            yield from _qualified(prefix + bare, provider)
    for bare in bare_names:
        yield from _qualified(bare, provider)
        if bare.startswith("ft:"):
            # "ft:gpt-4o-mini-2024-07-18:org::id" is priced as LiteLLM's "ft:gpt-4o-mini-2024-07-18".
            yield from _qualified("ft:" + bare[3:].split(":", 1)[0], provider)


def _bare_names(name: str) -> Iterator[str]:
    yield name
    while "/" in name:
        name = name.split("/", 1)[1]
        yield name


def _qualified(name: str, provider: str | None) -> Iterator[str]:
    if provider and not name.lower().startswith(provider + "/"):
        yield f"{provider}/{name}"
    yield name


def _image_prefixes(size: str | None, quality: str | None) -> list[str]:
    dimensions = image_dimensions(size)
    if dimensions is None:
        return []
    size_key = f"{dimensions[0]}-x-{dimensions[1]}"
    if quality:
        return [f"{quality.strip().lower()}/{size_key}/", f"{size_key}/"]
    # DALL-E 3 keys every size by quality, and "standard" is what OpenAI uses when none is asked.
    return [f"{size_key}/", f"standard/{size_key}/"]
