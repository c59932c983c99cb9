"""rpm_limit, tpm_limit and max_parallel_requests of teams, internal users, customers and
organisations: leased like a key's, refused with LiteLLM's (v3 rate limiter) wording."""

from __future__ import annotations

import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import Admission, AwaitRenewal, BudgetRequest
from services.proxy.budget.guard import BudgetGuard
from services.proxy.budget.rate_limits import RateLimited, entity_rate_specs, model_rate_specs
from shared.events import EntityChanged, TokenUsage, UsageEvent
from tests.unit.test_budget_rate_limits import Clock, admit_only, workers

RESETS = "Limit resets at: 2026-01-01 12:01:00 UTC"


def with_entity(guards: list[BudgetGuard], kind: str, entity_id: str, **limits: object) -> None:
    for guard in guards:
        guard.directory.apply(EntityChanged(entity_type=kind, entity_id=entity_id, state=dict(limits)))


async def calls(guard: BudgetGuard, caller: CallerIdentity, end_user: str | None = None, tokens: int = 100) -> tuple[int, str]:
    """Calls (each settled at once) until refused: how many passed, and the refusal's message."""
    passed = 0
    while True:
        request = BudgetRequest("r", caller, "m", end_user, (), "acompletion", {})
        try:
            admission = await admit_only_request(guard, request)
        except RateLimited as refused:
            return passed, refused.message
        guard.settle(admission, UsageEvent.model_construct(
            quoted_cost=None, start_time=guard.clock(), usage=TokenUsage(prompt_tokens=tokens, completion_tokens=0)))
        passed += 1


async def admit_only_request(guard: BudgetGuard, request: BudgetRequest) -> Admission:
    try:
        return guard.admit(request)
    except AwaitRenewal as short:
        return await short.admit_after_renewal()


async def test_a_teams_rpm_limit_is_shared_by_its_keys_across_workers() -> None:
    """Team rpm_limit 4, two keys of the team alternating two workers: 4 calls, then LiteLLM's team message."""
    guards = workers(2, Clock())
    with_entity(guards, "team", "t1", rpm_limit=4)
    keys = [CallerIdentity.from_state(k, {"team_id": "t1"}) for k in ("k1", "k2")]
    passed = 0
    with pytest.raises(RateLimited) as refused:
        while True:
            await admit_only_request(guards[passed % 2], BudgetRequest("r", keys[passed % 2], "m", None, (), "acompletion", {}))
            passed += 1
    assert passed == 4
    assert refused.value.status == 429 and refused.value.type == "rate_limit_error"
    assert refused.value.message == f"Rate limit exceeded for team: t1. Limit type: requests. Current limit: 4, Remaining: 0. {RESETS}"


async def test_a_users_tpm_limit_applies_to_its_keys_without_a_team() -> None:
    """User tpm_limit 300, calls of 100 tokens: 3 calls, then LiteLLM's user message; its team key is not limited by it."""
    guard, = workers(1, Clock())
    with_entity([guard], "user", "u1", tpm_limit=300)
    assert (await calls(guard, CallerIdentity.from_state("k", {"user_id": "u1"}))) == (
        3, f"Rate limit exceeded for user: u1. Limit type: tokens. Current limit: 300, Remaining: 0. {RESETS}")
    team_key = CallerIdentity.from_state("kt", {"user_id": "u1", "team_id": "t"})
    await admit_only(guard, team_key)  # a team key answers to its team, not its owner (LiteLLM's budget rule)


async def test_a_customers_rpm_limit_counts_its_calls_over_every_key() -> None:
    """Customer rpm_limit 2 (the request's `user`), calls through two keys: 2 pass, then LiteLLM's end_user message."""
    guard, = workers(1, Clock())
    with_entity([guard], "customer", "c1", rpm_limit=2)
    passed, _ = await calls(guard, CallerIdentity.from_state("k1", {}), end_user="c1")
    assert passed == 2
    with pytest.raises(RateLimited) as refused:
        await admit_only_request(guard, BudgetRequest("r", CallerIdentity.from_state("k2", {}), "m", "c1", (), "acompletion", {}))
    assert refused.value.message == f"Rate limit exceeded for end_user: c1. Limit type: requests. Current limit: 2, Remaining: 0. {RESETS}"
    await admit_only_request(guard, BudgetRequest("r", CallerIdentity.from_state("k2", {}), "m", "c2", (), "acompletion", {}))


async def test_an_organisations_max_parallel_requests_holds_calls_in_flight() -> None:
    """Organisation max_parallel_requests 2: two calls in flight, the third refused; one ends, the next passes."""
    clock = Clock()
    guard, = workers(1, clock)
    with_entity([guard], "organization", "o1", max_parallel_requests=2)
    caller = CallerIdentity.from_state("k", {"organization_id": "o1"})
    held = [await admit_only(guard, caller) for _ in range(2)]
    with pytest.raises(RateLimited) as refused:
        await admit_only(guard, caller)
    assert refused.value.message == (
        "Rate limit exceeded for organization: o1. Limit type: max_parallel_requests. Current limit: 2, Remaining: 0. "
        "Limit resets at: 2026-01-01 12:01:05 UTC")  # no window: LiteLLM's "now + 60 s"
    guard.settle(held[0], UsageEvent.model_construct(quoted_cost=None, start_time=clock(), usage=TokenUsage()))
    await admit_only(guard, caller)


def test_limits_are_parsed_once_per_state_and_bad_values_ignored() -> None:
    """Counts (int or digit strings) become specs named <kind>:<id>; null, negatives, bools and keys' kinds give none."""
    specs = entity_rate_specs("team", "t:x", {"rpm_limit": 5, "tpm_limit": "7", "max_parallel_requests": None})
    assert [(measure, spec.kind, spec.entity_id, spec.max_budget) for measure, spec in specs] == [
        ("requests", "rpm", "team:t:x", 5), ("tokens", "tpm", "team:t:x", 7)]
    assert entity_rate_specs("team", "t", {"rpm_limit": -1, "tpm_limit": True, "max_parallel_requests": "x"}) == ()
    assert entity_rate_specs("key", "h", {"rpm_limit": 5}) == ()


async def test_a_keys_model_rpm_limit_holds_only_that_model() -> None:
    """model_rpm_limit {"m": 2}: 2 calls to m, the 3rd LiteLLM's model_per_key 429; calls to another model pass."""
    guard, = workers(1, Clock())
    with_entity([guard], "key", "h1", model_rpm_limit={"m": 2})
    caller = CallerIdentity.from_state("h1", {})
    assert (await calls(guard, caller)) == (
        2, f"Rate limit exceeded for model_per_key: h1:m. Limit type: requests. Current limit: 2, Remaining: 0. {RESETS}")
    for _ in range(3):
        await admit_only_request(guard, BudgetRequest("r", caller, "other", None, (), "acompletion", {}))


async def test_a_keys_model_tpm_limit_from_its_metadata_counts_tokens() -> None:
    """model_tpm_limit {"m": 300} in the key's metadata (where LiteLLM also reads it), calls of 100 tokens: 3 calls, then 429."""
    guard, = workers(1, Clock())
    with_entity([guard], "key", "h2", metadata={"model_tpm_limit": {"m": 300}})
    assert (await calls(guard, CallerIdentity.from_state("h2", {}))) == (
        3, f"Rate limit exceeded for model_per_key: h2:m. Limit type: tokens. Current limit: 300, Remaining: 0. {RESETS}")


def test_model_limits_are_parsed_per_model() -> None:
    """rpm and tpm of one model share its specs; a model with only bad limits has none."""
    specs = model_rate_specs("h", {"model_rpm_limit": {"a": 3, "b": -1}, "model_tpm_limit": {"a": "9"}})
    assert {model: [(measure, spec.entity_id, spec.max_budget) for measure, spec in found] for model, found in specs.items()} == {
        "a": [("requests", "model_per_key:h:a", 3), ("tokens", "model_per_key:h:a", 9)]}
