"""What a provider with its own API (not OpenAI's) must supply to the relay: the request it sends
for an OpenAI-shaped call, the OpenAI-shaped answer it makes of the upstream's, its error wording,
and a stream decoder. A deployment on such a provider carries one `NativeWire` on its Target; the
OpenAI-compatible path never looks at it beyond `target.native is None`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from services.proxy.errors import UpstreamError


class StreamDecoder(Protocol):
    """The upstream's stream bytes in, OpenAI chat.completion.chunk dicts out. The chunk carrying
    `usage` comes from `close()`, once the upstream ended its stream."""

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...


class NativeWire:
    """One deployment's native API. Built once at start-up; pure apart from signing."""

    provider = ""
    call_types: frozenset[str] = frozenset()
    speaks_messages = False  # takes Anthropic's Messages API itself (/v1/messages passes through): messages_request

    def __init__(self, api_base: str, urls: dict[str, str], headers: dict[str, str]) -> None:
        self.api_base = api_base  # shown in x-litellm-model-api-base
        self.urls = urls  # call type -> URL of the plain (not streamed) call
        self.headers = headers  # static headers (auth, protocol), besides Content-Type

    def check(self, call_type: str) -> None:
        if call_type not in self.call_types:
            raise UpstreamError(f"{self.provider} deployments do not serve {_CALL_NAMES.get(call_type, call_type)}",
                                400, type="invalid_request_error")

    async def prepare(self) -> None:
        """Called before each request: where a provider fetches what signing needs (an OAuth token)."""

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        """(path?query, body bytes) for the upstream."""
        raise NotImplementedError

    def messages_request(self, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        """(path?query, body bytes) for a Messages API request as the caller sent it (model already removed)."""
        raise NotImplementedError

    def sign(self, header_block: bytes, path: str, payload: bytes) -> bytes:
        """The request's header lines: the static ones, plus any signature over this request."""
        return header_block

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI-shaped answer (with an OpenAI usage object) for the upstream's."""
        raise NotImplementedError

    def with_header_usage(self, call_type: str, answer: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """The OpenAI-shaped answer with the usage the upstream's (lower-case) headers report, where it reports it there."""
        return answer

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        """(message, type) from the upstream's error body."""
        return None, None

    def stream_decoder(self, body: dict[str, Any]) -> StreamDecoder:
        raise NotImplementedError


_CALL_NAMES = {"acompletion": "chat completions", "atext_completion": "text completions (/v1/completions)",
               "aembedding": "embeddings", "aimage_generation": "image generations"}


class ChunkMaker:
    """OpenAI chat.completion.chunk dicts for one stream: one id, model and creation time."""

    def __init__(self, chunk_id: str = "", model: str = "") -> None:
        self.id, self.model, self.created = chunk_id, model, int(time.time())

    def chunk(self, delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage}


def openai_usage_from_parts(prompt: int, completion: int, *, cached: int = 0, cache_creation: int = 0,
                            reasoning: int = 0) -> dict[str, Any]:
    """OpenAI's usage object, LiteLLM's cache fields beside it: prompt includes the cached and
    cache-written tokens, completion includes the reasoning tokens."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": cache_creation,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def count(value: Any) -> int:
    """A token count from an upstream's JSON: a non-negative int, else 0 (openai_usage bounds it)."""
    return value if type(value) is int and value > 0 else 0


def estimated_prompt_tokens(given: Any) -> int:
    """Prompt tokens of embedding input an upstream reports no count for: four characters a token,
    rounded up per text (docs/providers.md)."""
    texts = [given] if isinstance(given, str) else given if isinstance(given, list) else []
    return sum((len(t) + 3) // 4 for t in texts if isinstance(t, str))


def url_path(url: str) -> str:
    """"/v1beta/models/x:generateContent?alt=sse" from "https://host/v1beta/models/x:generateContent?alt=sse"."""
    rest = url.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1]
