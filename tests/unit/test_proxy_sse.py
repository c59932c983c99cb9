"""SSE pass-through: complete events are split off, the usage chunk gets the exact cost."""

from decimal import Decimal

import orjson

from services.proxy.providers.sse import format_money, iter_events, rewrite_usage, split_complete

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":80,"total_tokens":100}}\n\n'


def test_split_keeps_the_unfinished_tail():
    """Only events ended by a blank line leave the buffer."""
    assert split_complete(CHUNK + b'data: {"cho') == (CHUNK, b'data: {"cho')
    assert split_complete(b"data: x") == (b"", b"data: x")


def test_crlf_events_are_split_too():
    """Servers that end lines with CRLF are understood."""
    block, rest = split_complete(b"data: a\r\n\r\ndata: b\r\n\r\n")
    assert [data for _, data, _ in iter_events(block)] == [b"a", b"b"]
    assert rest == b""


def test_usage_chunk_gets_cost_as_an_exact_json_number():
    """The usage chunk carries "cost": 0.000051 with exactly the Decimal's digits."""
    seen = []

    def on_usage(chunk):
        seen.append(chunk["usage"]["prompt_tokens"])
        return Decimal("0.0000510")

    out = rewrite_usage(CHUNK + USAGE + b"data: [DONE]\n\n", on_usage, keep=True)
    events = [data for _, data, _ in iter_events(out)]
    assert seen == [20]
    assert events[0] == CHUNK[6:-2]
    assert b'"cost":0.000051}' in events[1]
    assert orjson.loads(events[1])["usage"]["total_tokens"] == 100
    assert events[2] == b"[DONE]"


def test_usage_chunk_is_dropped_when_the_client_did_not_ask():
    """Without stream_options.include_usage the client sees OpenAI's stream, usage still priced."""
    calls = []
    out = rewrite_usage(CHUNK + USAGE, lambda c: calls.append(c) or Decimal(1), keep=False)
    assert out == CHUNK
    assert len(calls) == 1


def test_null_usage_on_content_chunks_passes_untouched():
    """Providers that send "usage": null on every chunk are passed byte for byte."""
    chunk = b'data: {"choices":[{"delta":{"content":"x"}}],"usage":null}\n\n'
    assert rewrite_usage(chunk, lambda c: Decimal(1), keep=True) == chunk


def test_money_text_is_plain_decimal():
    """No exponent, no trailing zeros, exact."""
    assert format_money(Decimal("5.1E-5")) == "0.000051"
    assert format_money(Decimal("0.0000074000")) == "0.0000074"
    assert format_money(Decimal("0E-12")) == "0"
    assert format_money(Decimal("120.50")) == "120.5"


def test_only_the_usage_event_is_rewritten_in_a_large_block():
    """Bytes before and after the usage chunk pass untouched, CRLF events included."""
    before = b"data: {\"a\":1}\r\n\r\n" + CHUNK * 3
    after = b"data: [DONE]\n\n"
    out = rewrite_usage(before + USAGE + after, lambda c: Decimal("0.5"), keep=True)
    assert out.startswith(before)
    assert out.endswith(after)
    assert b'"cost":0.5}' in out[len(before):-len(after)]
