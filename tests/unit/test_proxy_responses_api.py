"""/v1/responses: the Responses API's usage in chat terms, and its stream's final event priced."""

from decimal import Decimal

import pytest

from services.proxy.calls.response_ids import Owner, decode
from services.proxy.calls.responses import ResponsesCall, ResponsesPassThrough, chat_usage
from services.proxy.errors import InvalidRequest, UpstreamError
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
    stage = ResponsesPassThrough(lambda chunk: Decimal("0.001023") if chunk["usage"]["prompt_tokens"] == 1200 else None, str.upper)
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    done = (b'event: response.completed\ndata: {"type":"response.completed","response":{"model":"o4-mini",'
            b'"usage":{"input_tokens":1200,"output_tokens":120}}}\n\n')
    out = stage.feed(delta + done[:40]) + stage.feed(done[40:])
    assert out.startswith(delta)
    assert out.endswith(b'"usage":{"input_tokens":1200,"output_tokens":120,"cost":0.001023}}}\n\n')
    broken = ResponsesPassThrough(lambda chunk: None, str.upper)
    broken.feed(b'event: error\ndata: {"type":"error","message":"overloaded"}\n\n')
    with pytest.raises(UpstreamConnectionError, match="overloaded"):
        broken.end()


ALICE, BOB = Owner("sk-master", "hash-alice"), Owner("sk-master", "hash-bob")


def test_managed_id_names_the_deployment_and_only_its_key_owns_it():
    """LiteLLM's managed id (provider, model_id, upstream id) decodes back; the owner tag admits only the creating key."""
    managed = ALICE.managed_id("openai", "dep-1", "resp_abc123")
    assert managed.startswith("resp_") and "/" not in managed and "+" not in managed and "=" not in managed
    stored = decode(managed)
    assert (stored.provider, stored.model_id, stored.upstream_id) == ("openai", "dep-1", "resp_abc123")
    assert ALICE.owns(stored) and not BOB.owns(stored)
    assert not Owner("another-master", "hash-alice").owns(stored)


def test_ids_that_are_not_managed_or_unsafe_decode_to_nothing():
    """An upstream's raw id, garbage, an overlong id or an upstream id that could escape the path are refused."""
    import base64
    def forged(text: str) -> str:
        return "resp_" + base64.urlsafe_b64encode(text.encode()).decode()
    assert decode("resp_abc123") is None
    assert decode("resp_!!!") is None
    assert decode("resp_" + "A" * 2000) is None
    assert decode("msg_abc") is None
    assert decode(forged("litellm:custom_llm_provider:openai;model_id:d;response_id:../../x;owner:t")) is None
    assert decode(forged("litellm:custom_llm_provider:openai;model_id:d;response_id:r1;owner:t")).upstream_id == "r1"


def test_previous_response_id_must_be_the_keys_own():
    """A previous_response_id of another key is OpenAI's 404; the caller's own goes upstream as the upstream id."""
    mine = ALICE.managed_id("openai", "dep-1", "resp_up1")
    call = ResponsesCall({"model": "o4", "input": "more", "previous_response_id": mine}, {}, ALICE)
    assert (call.previous.model_id, call.previous.upstream_id) == ("dep-1", "resp_up1")
    with pytest.raises(UpstreamError) as refused:
        ResponsesCall({"model": "o4", "input": "more", "previous_response_id": mine}, {}, BOB)
    assert (refused.value.status, refused.value.code) == (404, "previous_response_not_found")
    with pytest.raises(UpstreamError):
        ResponsesCall({"model": "o4", "input": "more", "previous_response_id": 7}, {}, ALICE)


def test_stream_ids_become_managed_from_response_created_on():
    """Once response.created names the upstream id, every later event carries the managed id instead."""
    stage = ResponsesPassThrough(lambda chunk: None, lambda upstream: "managed-" + upstream)
    created = b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_u1","usage":null}}\n\n'
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_1","delta":"Hi"}\n\n'
    done = b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_u1","usage":null}}\n\n'
    out = stage.feed(created + delta + done)
    assert out == created.replace(b'"resp_u1"', b'"managed-resp_u1"') + delta + done.replace(b'"resp_u1"', b'"managed-resp_u1"')
