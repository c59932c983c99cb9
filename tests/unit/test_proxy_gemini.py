"""OpenAI chat and embeddings to and from the Gemini API, usageMetadata mapped as LiteLLM maps it."""

import orjson
import pytest

from services.proxy.errors import InvalidRequest
from services.proxy.providers.gemini import GeminiStream, GeminiWire, request_to_gemini, response_from_gemini, usage_from_gemini
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.events import TokenUsage


def test_usage_metadata_maps_cached_and_thinking_tokens():
    """prompt = promptTokenCount (cached inside), completion = candidates + thoughts, thoughts as reasoning."""
    usage = usage_from_gemini({"promptTokenCount": 1200, "cachedContentTokenCount": 1000, "candidatesTokenCount": 80,
                               "thoughtsTokenCount": 40, "totalTokenCount": 1320})
    assert usage_from_openai(usage) == TokenUsage(prompt_tokens=1200, completion_tokens=120, cache_read_input_tokens=1000,
                                                  reasoning_tokens=40)
    assert usage["total_tokens"] == 1320


def test_hostile_usage_metadata_counts_nothing():
    """Strings, negatives, booleans and a non-object usageMetadata count as zero, never raise."""
    assert usage_from_openai(usage_from_gemini("lots")) == TokenUsage()
    assert usage_from_openai(usage_from_gemini({"promptTokenCount": "9", "candidatesTokenCount": -5, "thoughtsTokenCount": True})) == TokenUsage()


def test_messages_tools_and_parameters_translate():
    """System text, alternating user/model turns, images, tool calls and results, and generation parameters."""
    body = {"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "look", "arguments": '{"q": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"}],
        "max_completion_tokens": 50, "stop": "END", "temperature": 0.2, "top_p": 0.9, "n": 1, "reasoning_effort": "low",
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "look", "description": "looks", "parameters": {"type": "object"}}}],
        "tool_choice": "required"}
    assert request_to_gemini(body) == {
        "contents": [
            {"role": "user", "parts": [{"text": "what is this?"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "look", "args": {"q": 1}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "look", "response": {"content": "a cat"}}}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"temperature": 0.2, "topP": 0.9, "candidateCount": 1, "maxOutputTokens": 50, "stopSequences": ["END"],
                             "responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
        "tools": [{"functionDeclarations": [{"name": "look", "description": "looks", "parameters": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }


def test_unsupported_role_is_a_400():
    """A role Gemini has no place for is refused before the call, naming the role."""
    with pytest.raises(InvalidRequest, match="'narrator'"):
        request_to_gemini({"messages": [{"role": "narrator", "content": "x"}]})


def test_response_with_thoughts_and_a_function_call():
    """Thought parts become reasoning_content; a functionCall becomes a tool call with finish_reason tool_calls."""
    parsed = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "hmm", "thought": True}, {"functionCall": {"name": "look", "args": {"q": 1}}}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    out = response_from_gemini(parsed, "gemini-2.5-flash")
    message = out["choices"][0]["message"]
    assert (out["id"], out["model"], out["choices"][0]["finish_reason"]) == ("r1", "gemini-2.5-flash", "tool_calls")
    assert (message["content"], message["reasoning_content"]) == (None, "hmm")
    assert message["tool_calls"][0]["function"] == {"name": "look", "arguments": '{"q":1}'}


def test_stream_events_split_anywhere_become_chunks_and_the_last_usage_wins():
    """Events cut mid-way are joined; text deltas come in order; close() gives the final usage only."""
    events = [{"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1}},
              {"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 4}}]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    decoder = GeminiStream("gemini-2.5-flash")
    chunks = decoder.feed(raw[:17]) + decoder.feed(raw[17:])
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, "stop"]
    (last,) = decoder.close()
    assert (last["choices"], last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]) == ([], 10, 6)


def test_stream_error_event_breaks_the_stream():
    """An error object inside the stream ends it as a broken upstream stream, with Google's message."""
    decoder = GeminiStream("m")
    with pytest.raises(UpstreamConnectionError, match="quota"):
        decoder.feed(b'data: {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}\r\n\r\n')


def test_wire_paths_and_error_shape():
    """api_base keeps a stated API version; image generation is refused clearly; errors read Google's shape."""
    wire = GeminiWire("gemini-2.0-flash", "http://127.0.0.1:9/v1", "k")
    assert wire.request("acompletion", {"messages": [{"role": "user", "content": "x"}]}, True)[0] == \
        "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert wire.error({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}) == ("bad", "INVALID_ARGUMENT")
    with pytest.raises(Exception, match="do not serve image generations"):
        wire.request("aimage_generation", {"prompt": "x"}, False)


@pytest.mark.parametrize(("answer", "refused"), [
    ({"candidates": "lots"}, False), ({"usageMetadata": [1, 2]}, False), ({}, False),
    ({"candidates": [{"content": "text"}]}, True), ({"candidates": [{"content": {"parts": 5}}]}, True)])
def test_hostile_answers_are_read_as_far_as_they_go_or_refused_as_a_502(answer, refused):
    """An answer off Google's documented shape: no choices and no usage, or a 502 naming the shape; never an exception."""
    from services.proxy.errors import UpstreamError
    from services.proxy.providers import wire
    from services.proxy.routing.router import Router
    from shared.config import parse_config

    config = parse_config({"model_list": [{"model_name": "g", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_key": "k"}}]}, {})
    target = Router.from_deployments(config.model_list, {}).pick("g")
    if refused:
        with pytest.raises(UpstreamError, match="unexpected shape") as caught:
            wire.parse_response(target, "acompletion", {}, orjson.dumps(answer))
        assert caught.value.status == 502
    else:
        data, usage, _model = wire.parse_response(target, "acompletion", {}, orjson.dumps(answer))
        assert (orjson.loads(data)["choices"], usage.prompt_tokens, usage.completion_tokens) == ([], 0, 0)
