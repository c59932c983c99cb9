"""Anthropic's Messages API to and from OpenAI chat, for /v1/messages on non-Anthropic deployments."""

from decimal import Decimal

import orjson
import pytest

from services.proxy.calls.messages import AnthropicPassThrough, MessagesCall, auth_headers
from services.proxy.errors import InvalidRequest
from services.proxy.providers.messages_api import MessagesEvents, chat_request, message_from_chat, messages_usage


def test_request_with_tools_images_and_results_becomes_a_chat_request():
    """System, images, tool_use / tool_result, stop_sequences, tool_choice and metadata.user_id map to chat fields."""
    body = {"model": "m", "max_tokens": 64, "system": "be brief", "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
            "tools": [{"name": "w", "description": "weather", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {"c": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "cold"}]}]}
    assert chat_request(body) == {
        "model": "m", "max_tokens": 64, "stop": ["END"], "metadata": {"user_id": "u1"}, "user": "u1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function",
                                                                   "function": {"name": "w", "arguments": '{"c":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "cold"}],
        "tools": [{"type": "function", "function": {"name": "w", "description": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    }


def test_usage_goes_back_in_anthropic_terms():
    """prompt 1200 with 1000 cached: input_tokens 200 beside cache_read 1000 (Anthropic counts them apart)."""
    assert messages_usage({"prompt_tokens": 1200, "completion_tokens": 120, "prompt_tokens_details": {"cached_tokens": 1000}}) == \
        {"input_tokens": 200, "output_tokens": 120, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1000}


def test_completion_with_a_tool_call_becomes_a_message():
    """Text and a tool call become text and tool_use blocks; finish_reason tool_calls becomes stop_reason tool_use."""
    message = message_from_chat({"choices": [{"message": {"content": "checking", "tool_calls": [
        {"id": "c1", "function": {"name": "w", "arguments": '{"c": 1}'}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7}}, "gpt")
    assert message["content"] == [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "c1", "name": "w", "input": {"c": 1}}]
    assert (message["stop_reason"], message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == ("tool_use", 5, 7)


def _events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_chunks_become_the_anthropic_event_sequence_with_the_cost():
    """message_start, a text block, a tool block, then message_delta (usage and exact cost) and message_stop."""
    priced = []
    events = MessagesEvents("m", lambda chunk: priced.append(chunk) or Decimal("0.0000074"))
    raw = events.feed({"choices": [{"delta": {"role": "assistant", "content": "Hi"}}]})
    raw += events.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
                                     "finish_reason": "tool_calls"}]})
    raw += events.feed({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 80}})
    raw += events.end()
    kinds = [e["type"] for e in _events(raw)]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "content_block_start",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    delta = _events(raw)[-2]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {"input_tokens": 20, "output_tokens": 80, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "cost": 0.0000074}
    assert b'"cost":0.0000074' in raw  # the exact digits on the wire, not a float's
    assert len(priced) == 1


def test_anthropic_stream_passes_through_and_message_delta_gets_the_cost():
    """Bytes other than message_delta pass untouched; the cost is priced on start's input and delta's output usage."""
    seen = []
    stage = AnthropicPassThrough(lambda chunk: seen.append(chunk["usage"]) or Decimal("0.00126"))
    start = b'event: message_start\ndata: {"type":"message_start","message":{"model":"c","usage":{"input_tokens":20,"output_tokens":1}}}\n\n'
    text = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}\n\n'
    delta = b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":80}}\n\n'
    out = stage.feed(start + text[:30]) + stage.feed(text[30:] + delta)
    assert out.startswith(start + text)
    assert out.endswith(b'"usage":{"output_tokens":80,"cost":0.00126}}\n\n')
    assert (seen[-1]["prompt_tokens"], seen[-1]["completion_tokens"]) == (20, 80)


def test_request_shape_checks_and_x_api_key():
    """max_tokens and messages are required (400 naming them); x-api-key stands for a bearer key."""
    with pytest.raises(InvalidRequest, match="max_tokens"):
        MessagesCall({"model": "m", "messages": [{"role": "user", "content": "x"}]}, {})
    with pytest.raises(InvalidRequest, match="messages"):
        MessagesCall({"model": "m", "messages": [], "max_tokens": 5}, {})
    assert auth_headers({"x-api-key": "sk-v"}) == {"Authorization": "Bearer sk-v"}


@pytest.mark.parametrize("messages", [" ", None, {"role": "user"}, ["hi"]])
def test_messages_that_are_not_a_list_of_objects_are_a_400(messages):
    """A Messages API body whose messages are not a list of objects is refused as the caller's error, never a 500."""
    with pytest.raises(InvalidRequest) as refused:
        chat_request({"model": "llama3", "max_tokens": 1, "messages": messages})
    assert (refused.value.message, refused.value.param) == ("messages: Input should be a list of message objects", "messages")
