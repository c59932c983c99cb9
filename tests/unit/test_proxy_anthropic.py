"""Chat completions to and from Anthropic's Messages API, cache tokens included."""

import orjson

from services.proxy.providers.anthropic import StreamTranslator, openai_usage, request_to_anthropic, response_from_anthropic
from services.proxy.providers.openai_usage import usage_from_openai


def test_system_messages_move_to_the_system_field():
    """System text becomes `system`; roles alternate; stop and user map to their Anthropic names."""
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                         {"role": "user", "content": [{"type": "text", "text": "again", "cache_control": {"type": "ephemeral"}}]}],
            "max_tokens": 50, "stop": "END", "user": "palantir", "temperature": 0.2, "x_fake": {"a": 1}}
    out = request_to_anthropic(body, "claude-3-5-sonnet-20241022")
    assert out == {
        "model": "claude-3-5-sonnet-20241022",
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                   {"type": "text", "text": "again", "cache_control": {"type": "ephemeral"}}]}],
        "max_tokens": 50, "temperature": 0.2, "stop_sequences": ["END"], "metadata": {"user_id": "palantir"}, "x_fake": {"a": 1},
    }


def test_tools_and_tool_results_translate():
    """OpenAI function tools and tool messages become tools / tool_use / tool_result blocks."""
    body = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"}],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}], "tool_choice": "required"}
    out = request_to_anthropic(body, "claude")
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Oslo"}}]}
    assert out["messages"][2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "cold"}]}]}
    assert out["tools"] == [{"name": "w", "description": "", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "any"}


def test_response_usage_counts_cached_tokens_inside_prompt_tokens():
    """input 20 + cache read 100 + cache write 30 = 150 prompt tokens, the parts reported beside."""
    message = {"id": "msg_1", "model": "claude-3-5-sonnet-20241022", "stop_reason": "max_tokens",
               "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
               "usage": {"input_tokens": 20, "output_tokens": 80, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 30}}
    out = response_from_anthropic(message)
    assert out["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "length"}
    usage = usage_from_openai(out["usage"])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (150, 80, 100, 30)


def test_stream_events_become_chunks_with_usage_last():
    """message_start .. message_stop become role, content, finish and a usage chunk."""
    translator = StreamTranslator()
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 80}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in translator.feed(e)]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {}, None]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["usage"] == openai_usage({"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 80})
    assert chunks[3]["usage"]["prompt_tokens"] == 25
    assert orjson.dumps(chunks[3])
