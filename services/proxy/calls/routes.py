"""The LLM routes' handlers. They are registered when the app is built (aiohttp's router is
frozen once it starts), and the Relay they serve calls with is built during start-up, once its
pools, usage emitter, key sync and budget gate are open (app.py's `llm_relay` context): the handlers
reach it through `self.relay`, set then, before the server accepts a connection."""

from __future__ import annotations

from aiohttp import web

from services.proxy.calls.messages import MessagesCall, count_tokens
from services.proxy.calls.relay import Relay
from services.proxy.calls.responses import ResponsesCall, retrieve
from services.proxy.routing.router import CHAT, EMBEDDING, IMAGE, TEXT


class LlmRoutes:
    relay: Relay

    def __init__(self, relay: Relay | None = None) -> None:
        if relay is not None:
            self.relay = relay

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self.relay.relay(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self.relay.relay(request, TEXT)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self.relay.relay(request, EMBEDDING)

    async def image_generations(self, request: web.Request) -> web.StreamResponse:
        return await self.relay.relay(request, IMAGE)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API (the Anthropic SDK, Claude Code)."""
        return await self.relay.relay(request, CHAT, MessagesCall)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API, passed to OpenAI-compatible deployments."""
        return await self.relay.relay(request, CHAT, ResponsesCall)

    async def responses_retrieve(self, request: web.Request) -> web.Response:
        """A stored response, from the deployment that created it, for the key that created it."""
        return await retrieve(self.relay, request)

    async def messages_count_tokens(self, request: web.Request) -> web.Response:
        return await count_tokens(self.relay, request)
