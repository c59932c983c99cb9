"""A hostile upstream against a whole stack (docs/adversarial.md): malformed framing, huge and slow
bodies, usage on every chunk, impossible token counts, bad JSON in a stream, errors. Whatever the
upstream does, the client gets an answer within a bound (or, for a stream the upstream cut, an
ended stream), a well-formed answer is booked once at its final usage, nothing stays held, and
the next ordinary call is in the spend logs within seconds. The module ends with `reconcile`."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.adversarial.harness import (ANSWER_BOUND_S, CASE_SETTINGS, EMBED_MODES, EMBED_PRICE, SLOW_TIMEOUT_S,
                                       TEST_TIMEOUT_S, Adversary, Reply, chat_cost, openai_error)
from tests.fixtures import hostile_upstream as hostile

pytestmark = [pytest.mark.adversarial, pytest.mark.e2e]

# Modes after which no complete 2xx answer may reach the client: the upstream's answer is broken,
# too big, too slow, cut off or an error.
NEVER_SUCCEED = frozenset({"chunked_negative", "chunked_nonhex", "chunked_huge", "conflicting_length", "huge_body",
                           "huge_sse_line", "slow_body", "slow_stream", "close_mid_body", "close_mid_stream",
                           *hostile.ERRORS})
UPSTREAM_MODES = tuple(m for m in hostile.MODES if m != "slow_ok")  # slow_ok is the fault suite's long call


def call(adversary: Adversary, api: str, mode: str, stream: bool, include_usage: bool) -> Reply:
    if api == "embeddings":
        body = {"model": f"hostile-embed-{mode}", "input": ["a", "b"]}
        return adversary.send("/embeddings", orjson.dumps(body))
    return adversary.chat(f"hostile-{mode}", stream=stream, include_usage=include_usage)


def final_usage(reply: Reply) -> dict | None:
    """The usage of the last stream event that carries one (what the client was told)."""
    usage = None
    for line in reply.body.split(b"\n"):
        if line.startswith(b"data: {"):
            data = orjson.loads(line[6:])
            usage = data.get("usage") or usage
    return usage


def judge(adversary: Adversary, api: str, mode: str, stream: bool, reply: Reply) -> None:
    """What any hostile upstream mode must leave behind; exact books for the well-formed ones."""
    streamed = stream and api == "chat"
    assert not reply.timed_out and reply.elapsed_s < ANSWER_BOUND_S, f"{mode}: no answer within {ANSWER_BOUND_S}s: {reply.describe()}"
    if mode.startswith("slow") and reply.status is not None and reply.status >= 400:
        assert reply.elapsed_s < SLOW_TIMEOUT_S + 5, f"{mode}: cut only after {reply.elapsed_s:.1f}s"
    if not streamed:
        assert reply.status is not None and reply.error is None, f"{mode}: the client got no clean answer: {reply.describe()}"
    complete = reply.error is None and reply.status is not None and 200 <= reply.status < 300 and (
        reply.complete_stream if streamed else True)
    if mode in NEVER_SUCCEED:
        assert not complete, f"{mode}: a broken upstream answer was relayed as a success: {reply.describe()}"
    if reply.status is not None and reply.status >= 400:
        openai_error(reply)
    if mode == "status_429":
        assert reply.status == 429, reply.describe()
    if mode.startswith("status_500"):
        assert reply.status is not None and reply.status >= 500, reply.describe()
    if mode in ("ok", "continuous_usage"):
        assert complete, f"{mode}: a well-formed answer was not relayed: {reply.describe()}"
    if complete:
        assert reply.call_id is not None, reply.describe()
        row = adversary.recorded(reply.call_id)
        if api == "embeddings" and mode == "ok":
            assert row == (16 * EMBED_PRICE, 16, 0)
        elif mode == "ok":
            assert row == (chat_cost(10, 20), 10, 20)
        elif mode == "continuous_usage":  # the last usage chunk is the total, settled once
            assert row == (chat_cost(100, 40), 100, 40)
    adversary.after_case()


def test_plain_answer_is_recorded_at_its_exact_cost(adversary: Adversary):
    """A well-formed answer of 1234 + 567 tokens: header and spend log both $0.002368."""
    reply = adversary.chat("hostile-ok", x_hostile={"usage": {"prompt_tokens": 1234, "completion_tokens": 567}})
    assert reply.status == 200, reply.describe()
    assert Decimal(reply.headers["x-litellm-response-cost"]) == Decimal("0.002368")
    assert adversary.recorded(reply.call_id) == (Decimal("0.002368"), 1234, 567)
    adversary.after_case()


def test_usage_on_every_chunk_is_settled_once_at_the_last(adversary: Adversary):
    """vLLM's continuous usage: the client's last usage (100 + 40) is what is logged ($0.00018), settled once."""
    reply = adversary.chat("hostile-continuous_usage", stream=True, include_usage=True)
    assert reply.status == 200 and reply.complete_stream, reply.describe()
    usage = final_usage(reply)
    assert usage is not None and {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == \
        {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}, usage
    assert adversary.recorded(reply.call_id) == (Decimal("0.00018"), 100, 40)
    adversary.after_case()


@pytest.mark.parametrize("mode", ["chunked_negative", "chunked_nonhex", "chunked_huge", "conflicting_length"])
def test_malformed_framing_is_refused_cleanly(adversary: Adversary, mode: str):
    """A chunk size of -6, zz or 2^64-1, or two Content-Lengths: a clean 5xx at once, the proxy still serving."""
    reply = adversary.chat(f"hostile-{mode}")
    assert reply.status is not None and reply.status >= 500 and reply.elapsed_s < 5, reply.describe()
    openai_error(reply)
    adversary.after_case()


def test_huge_upstream_body_is_capped(adversary: Adversary):
    """An 80 MiB upstream answer: a clean 5xx, not an 80 MiB read into memory and relayed."""
    reply = adversary.chat("hostile-huge_body")
    assert reply.status is not None and reply.status >= 500, reply.describe()
    openai_error(reply)
    adversary.after_case()


def test_slow_upstream_body_is_cut_by_time(adversary: Adversary):
    """A body trickling one byte every 0.5 s: cut by the deployment's 3 s timeout with a clean 5xx."""
    reply = adversary.chat("hostile-slow_body")
    assert reply.status is not None and reply.status >= 500 and reply.elapsed_s < SLOW_TIMEOUT_S + 5, reply.describe()
    openai_error(reply)
    adversary.after_case()


@pytest.mark.timeout(TEST_TIMEOUT_S)
@CASE_SETTINGS
@given(api=st.sampled_from(("chat", "chat", "embeddings")), mode=st.sampled_from(UPSTREAM_MODES), stream=st.booleans(),
       include_usage=st.booleans())
@example(api="chat", mode="continuous_usage", stream=True, include_usage=False)
@example(api="chat", mode="bad_json_usage", stream=True, include_usage=True)
@example(api="chat", mode="details_nondict", stream=False, include_usage=False)
@example(api="chat", mode="tokens_nonnumeric", stream=True, include_usage=True)
def test_hostile_upstreams_leave_the_books_running(adversary: Adversary, api: str, mode: str, stream: bool, include_usage: bool):
    """Generated hostile upstream answers: bounded, clean, booked once when answered, nothing held, the next call booked."""
    if api == "embeddings" and mode not in EMBED_MODES:
        mode = "ok"
    judge(adversary, api, mode, stream, call(adversary, api, mode, stream, include_usage))


def test_dead_letter_listings_run(adversary: Adversary):
    """`python -m services.ledger dlq list` and `python -m services.pricer dlq list` exit 0 on this stack."""
    for service in ("services.ledger", "services.pricer"):
        status, output = adversary.command(service, "dlq", "list")
        assert status == 0, f"{service} dlq list exited {status}:\n{output[-2000:]}"


def test_reconcile_finds_no_difference(adversary: Adversary):
    """After every hostile upstream of the module: `python -m services.ledger reconcile` exits 0."""
    status, output = adversary.command("services.ledger", "reconcile", "--settle", "30")
    assert status == 0, f"reconcile found differences:\n{output[-3000:]}"
