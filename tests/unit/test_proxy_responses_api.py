"""/v1/responses: the Responses API's usage in chat terms, and its stream's final event priced."""

from decimal import Decimal

import pytest

from services.proxy.calls.responses import ResponsesCall, ResponsesPassThrough, chat_usage
from services.proxy.errors import InvalidRequest
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.events import TokenUsage


def test_usage_maps_cached_input_and_reasoning_output():
    """input 1200 (1000 cached) and output 120 (40 reasoning) become prompt, cache read, completion and reasoning."""
    usage = chat_usage({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 120,
                        "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 1320})
    assert usage_from_openai(usage) == TokenUsage(prompt_tokens=1200, completion_tokens=120, cache_read_input_tokens=1000,
                                                  reasoning_tokens=40)
    assert usage_from_openai(chat_usage({"input_tokens": "x", "input_tokens_details": 7})) == TokenUsage()


def test_the_chat_form_budgets_read():
    """input becomes one user message and max_output_tokens max_tokens; input is required."""
    call = ResponsesCall({"model": "o4", "input": "hi", "max_output_tokens": 50, "user": "u"}, {})
    assert call.openai_body == {"model": "o4", "user": "u", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    with pytest.raises(InvalidRequest, match="input"):
        ResponsesCall({"model": "o4"}, {})


def test_only_the_final_event_is_rewritten_with_the_cost():
    """Deltas pass byte for byte; response.completed's usage gets the exact cost; an error event breaks the stream."""
    stage = ResponsesPassThrough(lambda chunk: Decimal("0.001023") if chunk["usage"]["prompt_tokens"] == 1200 else None)
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    done = (b'event: response.completed\ndata: {"type":"response.completed","response":{"model":"o4-mini",'
            b'"usage":{"input_tokens":1200,"output_tokens":120}}}\n\n')
    out = stage.feed(delta + done[:40]) + stage.feed(done[40:])
    assert out.startswith(delta)
    assert out.endswith(b'"usage":{"input_tokens":1200,"output_tokens":120,"cost":0.001023}}}\n\n')
    broken = ResponsesPassThrough(lambda chunk: None)
    broken.feed(b'event: error\ndata: {"type":"error","message":"overloaded"}\n\n')
    with pytest.raises(UpstreamConnectionError, match="overloaded"):
        broken.end()
