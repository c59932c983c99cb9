"""Cohere v2: parameters renamed as LiteLLM renames them, usage.tokens as usage, the stream's events as chunks."""

import orjson
import pytest

from services.proxy.providers.cohere import CohereStream, chat_request, chat_response
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.events import TokenUsage


def test_openai_parameters_take_cohere_names():
    """top_p -> p, stop -> stop_sequences, n -> num_generations, max_completion_tokens -> max_tokens; messages as they are."""
    body = {"messages": [{"role": "user", "content": "hi"}], "top_p": 0.5, "stop": "END", "n": 2, "max_completion_tokens": 9, "temperature": 0}
    assert chat_request(body, "command-r") == {"model": "command-r", "messages": [{"role": "user", "content": "hi"}], "temperature": 0,
                                               "p": 0.5, "stop_sequences": ["END"], "num_generations": 2, "max_tokens": 9}


def test_answer_uses_tokens_not_billed_units_and_maps_tool_calls():
    """usage.tokens counts (as LiteLLM); a TOOL_CALL answer keeps its OpenAI-shaped tool calls."""
    calls = [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]
    out = chat_response({"finish_reason": "TOOL_CALL", "message": {"tool_calls": calls},
                         "usage": {"billed_units": {"input_tokens": 1}, "tokens": {"input_tokens": 25, "output_tokens": 80}}}, "command-r")
    assert (out["choices"][0]["finish_reason"], out["choices"][0]["message"]["tool_calls"]) == ("tool_calls", calls)
    assert usage_from_openai(out["usage"]) == TokenUsage(prompt_tokens=25, completion_tokens=80)


def _event(kind, **data):
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def test_stream_events_become_chunks_and_message_end_the_usage():
    """message-start, content-delta and message-end become chunks; close() gives message-end's usage."""
    decoder = CohereStream("command-r")
    raw = (_event("message-start", id="m1", delta={"message": {"role": "assistant"}})
           + _event("content-delta", index=0, delta={"message": {"content": {"text": "Hi"}}})
           + _event("message-end", delta={"finish_reason": "MAX_TOKENS", "usage": {"tokens": {"input_tokens": 3, "output_tokens": 4}}}))
    chunks = decoder.feed(raw[:25]) + decoder.feed(raw[25:])
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    (usage,) = decoder.close()
    assert (usage["usage"]["prompt_tokens"], usage["usage"]["completion_tokens"]) == (3, 4)
    with pytest.raises(UpstreamConnectionError, match="overloaded"):
        CohereStream("m").feed(_event("error", message="overloaded"))
