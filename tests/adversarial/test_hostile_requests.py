"""Hostile client requests against a whole stack (docs/adversarial.md): whatever a caller sends,
the proxy answers a 2xx that is recorded or a clean OpenAI-shaped error, refuses what it could not
book before paying the upstream, and leaves nothing held: the next ordinary call is in the spend
logs within seconds and every in-flight gauge is back to 0. The module ends with `reconcile`."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given

from tests.adversarial.cases import EITHER, METADATA_FIELDS, OK, REFUSE, REJECT, Case, chat_body, hostile_requests
from tests.adversarial.harness import CASE_SETTINGS, EMBED_PRICE, TEST_TIMEOUT_S, Adversary, Reply, chat_cost, openai_error

pytestmark = [pytest.mark.adversarial, pytest.mark.e2e]


def judge(adversary: Adversary, case: Case, reply: Reply, upstream_calls_before: int) -> None:
    """Assert the answer `case` asks for, then the checks that follow every case."""
    assert not reply.timed_out, f"{case!r}: no answer within the bound: {reply.describe()}"
    assert reply.error is None, f"{case!r}: the connection broke on a client-side case: {reply.describe()}"
    assert reply.status is not None
    if case.expect == REFUSE:
        assert reply.status == 400, f"{case!r}: not refused: {reply.describe()}"
        error = openai_error(reply)
        assert error["type"] == "invalid_request_error", reply.describe()
        assert isinstance(error["param"], str) and any(f in error["param"] for f in case.fields), \
            f"{case!r}: error.param {error['param']!r} names none of {case.fields}"
        assert adversary.upstream_calls() == upstream_calls_before, f"{case!r}: refused, but the upstream was called"
    elif case.expect == REJECT:
        assert 400 <= reply.status < 500, f"{case!r}: {reply.describe()}"
        openai_error(reply)
    elif case.expect == OK:
        assert reply.status == 200, f"{case!r}: {reply.describe()}"
    if 200 <= reply.status < 300:
        assert case.expect in (OK, EITHER), f"{case!r}: answered {reply.status}"
        assert reply.call_id is not None, reply.describe()
        spend, _, _ = adversary.recorded(reply.call_id)
        if case.cost is not None:
            assert spend == case.cost, f"{case!r}: logged at {spend}, not {case.cost}"
    elif case.expect == EITHER:
        openai_error(reply)
    adversary.after_case()


def run(adversary: Adversary, case: Case) -> None:
    before = adversary.upstream_calls()
    judge(adversary, case, adversary.send(case.path, case.content), before)


def test_ordinary_call_is_recorded_exactly(adversary: Adversary):
    """The baseline the suite relies on: an ordinary call is logged at 10 + 20 tokens, $0.00005."""
    reply = adversary.chat("hostile-ok")
    assert reply.status == 200, reply.describe()
    assert adversary.recorded(reply.call_id) == (chat_cost(10, 20), 10, 20)
    adversary.assert_settled()


def test_issue_example_is_refused_before_the_upstream(adversary: Adversary):
    """Issue 14's call (a NUL in `user`, 300,000 quotes of metadata) is a 400 naming a field; the books go on."""
    body = orjson.dumps({"model": "hostile-ok", "mock_response": "x", "messages": [{"role": "user", "content": "hi"}],
                         "user": "a\u0000b", "metadata": {"p": '"' * 300_000}})
    run(adversary, Case("issue 14", "/chat/completions", body, REFUSE, ("user", "metadata")))


def test_anthropic_model_on_embeddings_holds_no_parallel_slot(adversary: Adversary):
    """Three embeddings calls to an Anthropic model (key: max_parallel_requests=2) leave no slot held."""
    for _ in range(3):
        reply = adversary.send("/embeddings", orjson.dumps({"model": "hostile-claude", "input": "x"}))
        assert reply.status is not None and 400 <= reply.status < 500, reply.describe()
        openai_error(reply)
    adversary.after_case()


def test_stream_flag_on_embeddings_is_not_free(adversary: Adversary):
    """`stream: true` on embeddings: refused, or answered and logged at 8 tokens' price ($0.0000008)."""
    run(adversary, Case("stream on embeddings", "/embeddings",
                        orjson.dumps({"model": "hostile-embed-ok", "input": "x", "stream": True}), EITHER, cost=8 * EMBED_PRICE))


@pytest.mark.timeout(TEST_TIMEOUT_S)
@CASE_SETTINGS
@given(case=hostile_requests)
@example(case=Case("80,000 tags", "/chat/completions", chat_body(metadata={"tags": [f"t{i}" for i in range(80_000)]}),
                   REFUSE, METADATA_FIELDS))
@example(case=Case("lone surrogate in user", "/chat/completions",
                   b'{"model": "hostile-ok", "messages": [{"role": "user", "content": "hi"}], "user": "a\\ud800b"}',
                   EITHER, cost=chat_cost(10, 20)))
@example(case=Case("unknown model", "/chat/completions", chat_body(model="no-such-model"), REJECT))
def test_hostile_requests_leave_the_books_running(adversary: Adversary, case: Case):
    """Generated hostile requests: each answered as its kind requires, then the next call is booked and nothing is held."""
    run(adversary, case)


def test_reconcile_finds_no_difference(adversary: Adversary):
    """After every hostile request of the module: `python -m services.ledger reconcile` exits 0."""
    status, output = adversary.command("services.ledger", "reconcile", "--settle", "30")
    assert status == 0, f"reconcile found differences:\n{output[-3000:]}"
