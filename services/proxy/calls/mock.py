"""`mock_response`: a completion made up by the proxy, never sent upstream, priced and recorded
like a real one. Usage is LiteLLM's mock usage: 10 prompt + 20 completion tokens."""

from __future__ import annotations

import time
from typing import Any

from services.proxy.routing.router import TEXT

MOCK_USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}


def mock_completion(call_type: str, model: str, content: str, request_id: str) -> dict[str, Any]:
    created = int(time.time())
    if call_type == TEXT:
        return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}], "usage": dict(MOCK_USAGE)}
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": dict(MOCK_USAGE)}


def mock_stream_chunks(model: str, content: str, request_id: str) -> list[dict[str, Any]]:
    """The chunks of a streamed mock: role + content, finish, then the usage chunk."""
    created = int(time.time())
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created, "model": model}
    return [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": dict(MOCK_USAGE)},
    ]
