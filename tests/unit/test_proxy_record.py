"""The usage event the proxy builds is a valid UsageEvent; upstream payloads and answers are shaped right."""

from datetime import datetime, timezone
from decimal import Decimal

import orjson

from services.proxy.auth.keys import CallerIdentity
from services.proxy.calls.attribution import attribute
from services.proxy.providers import wire
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.routing.router import CHAT, EMBEDDING, IMAGE, build_target
from services.proxy.usage_log.record import encode_usage, usage_event, with_fields
from shared.config import parse_config
from shared.events import TokenUsage, UsageEvent, decode, encode

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def target(model="groq/llama3-8b-8192", **params):
    config = parse_config({"model_list": [{"model_name": "llama3", "litellm_params": {"model": model, "api_base": "http://u/v1", **params}}]}, {})
    return build_target(config.model_list[0], {})


def test_unvalidated_construction_yields_a_valid_event():
    """The hot path's model_construct event survives a full encode -> validate round trip unchanged."""
    caller = CallerIdentity.from_state("abc", {"user_id": "u1", "team_id": "t1", "key_alias": "ci"})
    attribution = attribute({"user": "palantir", "metadata": {"tags": ["x"], "spend_logs_metadata": {"k": "v"}, "run": 1}}, {}, caller)
    event = usage_event(request_id="r1", call_type="acompletion", caller=caller, attribution=attribution,
                        target=target(input_cost_per_token=1e-06), start_time=NOW, end_time=NOW,
                        usage=TokenUsage(prompt_tokens=20, completion_tokens=80))
    event = event.model_copy(update={"quoted_cost": Decimal("0.0000074"), "quoted_catalog_version": "v"})
    decoded = decode(encode(event))
    assert decoded == UsageEvent.model_validate(event.model_dump())
    assert (decoded.event_id, decoded.end_user, decoded.request_tags, decoded.team_id) == ("r1", "palantir", ["x"], "t1")
    assert decoded.custom_prices == {"input_cost_per_token": Decimal("0.000001")}
    assert decoded.metadata == {"run": 1}
    assert decoded.quoted_cost == Decimal("0.0000074")


def test_stream_payload_asks_for_usage_and_uses_the_deployment_model():
    """Streaming requests get stream_options.include_usage; the model is the deployment's."""
    payload = orjson.loads(wire.request_payload(target(), CHAT, {"model": "llama3", "stream": True, "stream_options": {"x": 1}}, stream=True))
    assert payload == {"model": "llama3-8b-8192", "stream": True, "stream_options": {"x": 1, "include_usage": True}}


def test_openai_usage_with_cached_and_reasoning_details():
    """OpenAI's details objects fill the cache-read and reasoning counts."""
    usage = usage_from_openai({"prompt_tokens": 100, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 40},
                               "completion_tokens_details": {"reasoning_tokens": 30}})
    assert (usage.prompt_tokens, usage.cache_read_input_tokens, usage.completion_tokens, usage.reasoning_tokens) == (100, 40, 50, 30)


def test_image_usage_counts_images_with_size_and_quality():
    """An image answer is counted by its images, with the requested size and quality."""
    raw = orjson.dumps({"created": 1, "data": [{"url": "a"}, {"url": "b"}]})
    _data, usage, _model = wire.parse_response(target(), IMAGE, {"size": "1024x1792", "quality": "hd"}, raw)
    assert (usage.image_count, usage.image_size, usage.image_quality) == (2, "1024x1792", "hd")


def test_embedding_answer_passes_byte_for_byte():
    """An OpenAI-shaped answer reaches the client unchanged."""
    raw = b'{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}'
    data, usage, model = wire.parse_response(target(), EMBEDDING, {}, raw)
    assert (data, usage.prompt_tokens, model) == (raw, 8, "e")


def test_upstream_error_keeps_status_and_message():
    """An upstream 429 becomes a 429 in OpenAI's error shape with the upstream's message."""
    error = wire.upstream_error(target(), 429, b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')
    assert (error.status, error.type) == (429, "rate_limit_error")
    assert error.message.endswith("slow down")


def test_request_ids_are_version_4_uuids_and_distinct():
    """The cheap request id generator still yields RFC 4122 version-4 UUIDs, never repeating."""
    import uuid

    from services.proxy.calls.relay import new_request_id

    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids[:100])


def test_the_hot_path_encoding_decodes_to_the_same_event_as_pydantics():
    """encode_usage (orjson) and shared.events.encode (pydantic) give the same event back, for every kind of field."""
    # Money, custom prices, times, nested usage, metadata, and an integer beyond 64 bits (orjson refuses it, so pydantic takes it).
    caller = CallerIdentity.from_state("abc", {"user_id": "u1", "team_id": "t1", "key_alias": "ci"})
    attribution = attribute({"user": "palantir", "metadata": {"tags": ["x"], "spend_logs_metadata": {"k": [1, {"v": None}]}}}, {}, caller)
    base = usage_event(request_id="r1", call_type="acompletion", caller=caller, attribution=attribution,
                       target=target(input_cost_per_token=1e-06), start_time=NOW, end_time=NOW,
                       usage=TokenUsage(prompt_tokens=20, completion_tokens=80, cache_read_input_tokens=5,
                                        duration_seconds=Decimal("1.25")),
                       stream=True, completion_start_time=NOW)
    events = [
        with_fields(base, quoted_cost=Decimal("0.0000074"), quoted_catalog_version="v"),
        with_fields(base, quoted_cost=Decimal("1E-10"), metadata={"n": 1.5, "s": "é"}),
        with_fields(base, metadata={"huge": 2 ** 70}),
    ]
    for event in events:
        fast = encode_usage(event)
        assert UsageEvent.model_validate_json(fast) == UsageEvent.model_validate_json(encode(event))
    assert b'"quoted_cost":"0.0000000001"' in encode_usage(events[1])  # never an exponent
    assert UsageEvent.model_validate_json(encode_usage(events[2])).metadata == {"huge": 2 ** 70}
