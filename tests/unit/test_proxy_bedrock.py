"""Bedrock: the event-stream framing, Converse translation and usage, and SigV4 credentials."""

import struct
import zlib

import orjson
import pytest

from services.proxy.errors import ConfigurationError
from services.proxy.providers.bedrock import BedrockWire, ConverseStream, request_to_converse, response_from_converse, usage_from_converse
from services.proxy.providers.eventstream import EventStreamDecoder, encode_message
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.providers.sigv4 import credentials_of, region_of
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.config import LiteLLMParams
from shared.events import TokenUsage

EVENT = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}


def test_a_message_round_trips_split_at_every_byte():
    """Two messages fed one byte at a time come out whole, headers and payload exact."""
    raw = encode_message(EVENT, b'{"a":1}') + encode_message({":message-type": "event"}, b"")
    decoder = EventStreamDecoder()
    out = [m for i in range(len(raw)) for m in decoder.feed(raw[i:i + 1])]
    assert out == [(EVENT, b'{"a":1}'), ({":message-type": "event"}, b"")]
    assert decoder.pending == 0


def test_a_corrupt_message_crc_breaks_the_stream():
    """One flipped payload byte fails the message CRC: the stream breaks rather than guess."""
    raw = bytearray(encode_message(EVENT, b'{"a":1}'))
    raw[-6] ^= 0xFF
    with pytest.raises(UpstreamConnectionError, match="message CRC"):
        EventStreamDecoder().feed(bytes(raw))


def test_an_impossible_length_is_refused_before_buffering():
    """A prelude announcing 4 GiB (with a valid prelude CRC) is refused at once, not waited for."""
    prelude = struct.pack(">II", 0xFFFFFFF0, 0)
    with pytest.raises(UpstreamConnectionError, match="impossible length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_converse_usage_adds_cache_reads_and_writes_into_the_prompt():
    """inputTokens 20 + cacheRead 1000 + cacheWrite 150 = 1170 prompt tokens, the parts beside it."""
    usage = usage_from_converse({"inputTokens": 20, "outputTokens": 80, "totalTokens": 1250,
                                 "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 150})
    assert usage_from_openai(usage) == TokenUsage(prompt_tokens=1170, completion_tokens=80, cache_read_input_tokens=1000,
                                                  cache_creation_input_tokens=150)


def test_request_translates_system_tools_cache_points_and_parameters():
    """System blocks, cachePoint after a cache_control part, toolUse/toolResult, inferenceConfig and thinking."""
    body = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"c": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "cold"}],
        "max_tokens": 64, "temperature": 0.5, "stop": ["END"], "reasoning_effort": "low",
        "tools": [{"type": "function", "function": {"name": "w", "description": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto"}
    assert request_to_converse(body, "anthropic.claude") == {
        "messages": [{"role": "user", "content": [{"text": "weather?"}]},
                     {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {"c": "Oslo"}}}]},
                     {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "cold"}]}}]}],
        "system": [{"text": "long context"}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.5, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "toolConfig": {"tools": [{"toolSpec": {"name": "w", "description": "weather", "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"auto": {}}},
    }


def test_response_tool_use_and_stop_reason():
    """A toolUse block becomes a tool call; stopReason tool_use becomes finish_reason tool_calls."""
    out = response_from_converse({"output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t1", "name": "w", "input": {"c": "Oslo"}}}]}}, "stopReason": "tool_use",
        "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}}, "anthropic.claude")
    choice = out["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("tool_calls", None)
    assert choice["message"]["tool_calls"] == [{"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"c":"Oslo"}'}}]
    assert (out["model"], out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"]) == ("anthropic.claude", 5, 7)


def test_stream_cut_inside_a_message_is_a_broken_stream():
    """A stream ending mid-message cannot be trusted for usage: close() raises."""
    decoder = ConverseStream("m")
    frame = encode_message({":event-type": "metadata", ":message-type": "event"}, orjson.dumps({"usage": {"inputTokens": 1}}))
    decoder.feed(frame[:-3])
    with pytest.raises(UpstreamConnectionError, match="ended inside a message"):
        decoder.close()


def test_credentials_from_params_then_environment_and_region_default():
    """Keys in litellm_params win over the environment; the region falls back to AWS_REGION, then us-west-2."""
    params = LiteLLMParams(model="bedrock/x", aws_access_key_id="AK", aws_secret_access_key="SK", aws_session_token="T")
    env = {"AWS_ACCESS_KEY_ID": "envAK", "AWS_SECRET_ACCESS_KEY": "envSK", "AWS_REGION": "eu-west-1"}
    creds = credentials_of(params, env, "here")
    assert (creds.access_key, creds.secret_key, creds.token) == ("AK", "SK", "T")
    assert credentials_of(LiteLLMParams(model="bedrock/x"), env, "here").access_key == "envAK"
    assert region_of(LiteLLMParams(model="bedrock/x"), env) == "eu-west-1"
    assert region_of(LiteLLMParams(model="bedrock/x"), {}) == "us-west-2"


def test_no_credentials_stops_start_up_with_what_to_set():
    """Without keys, profile or API key the deployment is a configuration error naming the options."""
    with pytest.raises(ConfigurationError, match="aws_access_key_id"):
        credentials_of(LiteLLMParams(model="bedrock/x"), {}, "model_list entry 'b'")


def test_cohere_embed_sends_several_texts_and_prices_the_header_count():
    """cohere.embed-* (a cross-region prefix too) embeds a list at once through /invoke; tokens from X-Amzn-Bedrock-Input-Token-Count."""
    wire = BedrockWire("us.cohere.embed-v4:0", "https://bedrock-runtime.us-east-1.amazonaws.com", None, "key")
    assert wire.call_types == frozenset({"aembedding"})
    path, body = wire.request("aembedding", {"input": ["a", "b"], "input_type": "search_query"}, False)
    assert (path, orjson.loads(body)) == ("/model/us.cohere.embed-v4%3A0/invoke",
                                          {"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"]})
    answer = wire.response("aembedding", {"input": ["abcdefgh", "b"]}, {"embeddings": {"float": [[0.5], [0.25]]}, "texts": ["a", "b"]})
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # no count reported: four characters a token, rounded up per text
    assert [d["embedding"] for d in answer["data"]] == [[0.5], [0.25]]
    assert wire.with_header_usage("aembedding", answer, {"x-amzn-bedrock-input-token-count": "7"})["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    for hostile in ("-1", "²", "7.5", ""):
        assert wire.with_header_usage("aembedding", {"usage": {"prompt_tokens": 3}}, {"x-amzn-bedrock-input-token-count": hostile})["usage"] == {"prompt_tokens": 3}
    titan = BedrockWire("amazon.titan-embed-text-v2:0", "https://x", None, "key")
    assert titan.with_header_usage("aembedding", {"usage": {"prompt_tokens": 5}}, {"x-amzn-bedrock-input-token-count": "9"})["usage"] == {"prompt_tokens": 5}
