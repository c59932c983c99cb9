"""The router's pure decisions: which deployment (simple-shuffle, least-busy), when a deployment
rests (cooldown), and what a failed attempt leads to (retry, fallback, give up)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import formatdate

import pytest

from services.proxy.calls.attempts import single_attempt
from services.proxy.errors import ConfigurationError, InvalidRequest, UpstreamError
from services.proxy.routing.cooldown import Cooldowns
from services.proxy.routing.policy import (
    RouterPolicy, context_window_exceeded, falls_back, plan_for, policy_from_config, request_timeout, retry_after_s,
    retry_delay_after, retry_delay_s, retryable,
)
from services.proxy.routing.router import Router, build_target
from services.proxy.routing.strategy import least_busy, shuffle_weights, simple_shuffle
from shared.config import parse_config


@dataclass
class D:
    model_id: str
    weight_setting: float | None = None
    rpm: int | None = None
    tpm: int | None = None


def test_weight_wins_over_rpm_and_tpm():
    """As LiteLLM: the first deployment's `weight` decides the draw, even when rpm/tpm are set."""
    assert shuffle_weights([D("a", weight_setting=3, rpm=1), D("b", weight_setting=1, rpm=9)]) == [3.0, 1.0]


def test_rpm_then_tpm_weigh_and_a_missing_setting_weighs_zero():
    """Without weights, rpm weighs; without rpm, tpm; a deployment lacking the chosen one weighs 0."""
    assert shuffle_weights([D("a", rpm=10), D("b", tpm=5)]) == [10.0, 0.0]
    assert shuffle_weights([D("a", tpm=7), D("b", tpm=3)]) == [7.0, 3.0]
    assert shuffle_weights([D("a"), D("b", rpm=3)]) is None


def test_simple_shuffle_is_seeded_and_proportional():
    """A seeded draw with weights 3:1 repeats exactly and picks near 75 % of the first."""
    group = [D("a", weight_setting=3), D("b", weight_setting=1)]
    first = [simple_shuffle(group, random.Random(1)).model_id for _ in range(5)]
    assert first == [simple_shuffle(group, random.Random(1)).model_id for _ in range(5)]
    rng = random.Random(42)
    picks = [simple_shuffle(group, rng).model_id for _ in range(4000)]
    assert 2850 < picks.count("a") < 3150


def test_a_zero_weight_deployment_is_never_drawn():
    """weight 0 takes no traffic while another deployment weighs more."""
    rng = random.Random(3)
    group = [D("a", weight_setting=1), D("b", weight_setting=0)]
    assert {simple_shuffle(group, rng).model_id for _ in range(200)} == {"a"}


def test_least_busy_takes_the_fewest_in_flight():
    """The deployment with the fewest calls in flight is chosen; equals are drawn among."""
    group = [D("a"), D("b"), D("c")]
    assert least_busy(group, {"a": 2, "b": 0, "c": 1}, random.Random(0)).model_id == "b"
    rng = random.Random(5)
    assert {least_busy(group, {"a": 1}, rng).model_id for _ in range(100)} == {"b", "c"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deployment_rests_after_more_than_allowed_fails_in_a_minute():
    """allowed_fails 2: the third failure within a minute rests it for cooldown_time, then it is back."""
    clock = Clock()
    cooldowns = Cooldowns(allowed_fails=2, cooldown_time_s=5, clock=clock)
    assert [cooldowns.failed("a", 500, 2) for _ in range(3)] == [False, False, True]
    assert cooldowns.resting("a")
    clock.now += 5
    assert not cooldowns.resting("a")


def test_failures_a_minute_apart_do_not_add_up():
    """Failures count within one minute; a later minute starts again from zero."""
    clock = Clock()
    cooldowns = Cooldowns(allowed_fails=1, cooldown_time_s=5, clock=clock)
    assert cooldowns.failed("a", 500, 2) is False
    clock.now += 61
    assert cooldowns.failed("a", 500, 2) is False


def test_rate_limit_rests_at_once_but_a_lone_deployment_never_rests():
    """A 429 rests a deployment at its first failure; the only deployment of its group never rests."""
    cooldowns = Cooldowns(allowed_fails=3, cooldown_time_s=5, clock=Clock())
    assert cooldowns.failed("a", 429, 2) is True
    assert cooldowns.failed("solo", 429, 1) is False
    assert not cooldowns.resting("solo")


def test_a_request_error_does_not_count_against_the_deployment():
    """A 400 or 422 is the request's fault: it never rests the deployment; a 401 or 404 counts."""
    cooldowns = Cooldowns(allowed_fails=0, cooldown_time_s=5, clock=Clock())
    assert [cooldowns.failed("a", status, 2) for status in (400, 413, 422)] == [False, False, False]
    assert not cooldowns.resting("a")
    assert cooldowns.failed("b", 401, 2) is True


def test_retry_decision_follows_litellm():
    """Rate limits, timeouts and server errors are retried; a 4xx the request caused is not."""
    assert [s for s in (400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 504) if retryable(s)] == [408, 429, 500, 502, 503, 504]


def test_a_retry_on_the_same_deployment_backs_off_exponentially():
    """0.5 s before the first retry on a deployment that failed, doubling, capped at 8 s."""
    assert [retry_delay_s(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_context_window_error_is_recognised():
    """A 400 naming the context length goes to context_window_fallbacks; another 400 falls back nowhere."""
    message = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."
    assert context_window_exceeded(400, message)
    assert falls_back(400, message)
    assert not falls_back(400, "temperature must be at most 2")
    assert not context_window_exceeded(500, message)


ROUTER_CONFIG = {
    "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1"}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/b", "api_base": "http://b/v1"}},
        {"model_name": "big", "litellm_params": {"model": "openai/big", "api_base": "http://c/v1"}},
    ],
    "litellm_settings": {"num_retries": 1, "fallbacks": [{"gpt": ["big"]}]},
    "router_settings": {"num_retries": 2, "routing_strategy": "least-busy", "allowed_fails": 1, "cooldown_time": 30,
                        "context_window_fallbacks": [{"gpt": ["big"]}], "timeout": 12},
}


def test_router_settings_win_over_litellm_settings():
    """router_settings overrides litellm_settings key by key; unset keys keep LiteLLM's defaults."""
    policy = policy_from_config(ROUTER_CONFIG["litellm_settings"], ROUTER_CONFIG["router_settings"])
    assert policy == RouterPolicy(num_retries=2, timeout_s=12.0, fallbacks={"gpt": ("big",)},
                                  context_window_fallbacks={"gpt": ("big",)}, allowed_fails=1, cooldown_time_s=30.0,
                                  routing_strategy="least-busy")
    assert policy_from_config({}, None) == RouterPolicy(num_retries=0, allowed_fails=3, cooldown_time_s=5.0)


@pytest.mark.parametrize("settings", [{"routing_strategy": "usage-based-routing-v3"}, {"num_retries": -1},
                                      {"num_retries": "2"}, {"fallbacks": {"gpt": 3}}, {"fallbacks": "big"}])
def test_bad_router_settings_stop_the_start(settings):
    """An unsupported strategy or a malformed num_retries/fallbacks is a configuration error."""
    with pytest.raises(ConfigurationError):
        policy_from_config({}, settings)


def test_a_fallback_to_an_unknown_model_stops_the_start():
    """fallbacks naming no model_name of the model_list is refused at start-up."""
    config = parse_config({**ROUTER_CONFIG, "router_settings": {"fallbacks": [{"gpt": ["nope"]}]}}, {})
    with pytest.raises(ConfigurationError, match="'nope'"):
        Router.from_config(config, {})


def test_the_request_overrides_retries_and_fallbacks():
    """num_retries, fallbacks and context_window_fallback_dict in the body replace the config's for that call."""
    policy = policy_from_config({}, ROUTER_CONFIG["router_settings"] | {"fallbacks": [{"gpt": ["big"]}]})
    assert plan_for(policy, "gpt", {}) == plan_for(policy, "gpt", {"num_retries": None})
    plan = plan_for(policy, "gpt", {"num_retries": 0, "fallbacks": ["x", "gpt"], "context_window_fallback_dict": {"gpt": "y"}})
    assert (plan.num_retries, plan.fallbacks, plan.context_window_fallbacks) == (0, ("x",), ("y",))


@pytest.mark.parametrize("body", [{"num_retries": 11}, {"num_retries": True}, {"fallbacks": "big"},
                                  {"fallbacks": [1]}, {"fallbacks": ["m"] * 11}, {"context_window_fallback_dict": []}])
def test_hostile_request_routing_fields_are_a_400(body):
    """Unbounded or malformed routing fields in a request are refused before any attempt."""
    with pytest.raises(InvalidRequest):
        plan_for(RouterPolicy(), "gpt", body)


def test_request_timeout_is_bounded():
    """A request's timeout is seconds above 0 and at most an hour; null leaves the deployment's."""
    assert (request_timeout(2), request_timeout(0.5), request_timeout(None)) == (2.0, 0.5, None)
    for bad in (0, -1, 3601, "5", True, [1]):
        with pytest.raises(InvalidRequest):
            request_timeout(bad)


def test_router_passes_over_resting_and_tried_deployments():
    """A retry avoids the deployment that failed, and a resting deployment takes no call while another can."""
    clock = Clock()
    router = Router.from_config(parse_config({**ROUTER_CONFIG, "router_settings": {"cooldown_time": 10}}, {}), {}, clock)
    a, b = router.targets("gpt")
    assert {router.pick("gpt", tried={a.model_id}).upstream_model for _ in range(10)} == {"b"}
    router.cooldowns.failed(b.model_id, 429, 2)
    assert {router.pick("gpt").upstream_model for _ in range(10)} == {"a"}
    clock.now += 10
    assert {router.pick("gpt").upstream_model for _ in range(10)} == {"a", "b"}


def test_router_under_least_busy_avoids_the_busy_deployment():
    """routing_strategy least-busy sends the next call to the deployment with fewer in flight."""
    router = Router.from_config(parse_config(ROUTER_CONFIG, {}), {})
    a, b = router.targets("gpt")
    router.in_flight[a.model_id] = 1
    assert {router.pick("gpt").model_id for _ in range(5)} == {b.model_id}


def test_weight_is_read_from_litellm_params():
    """litellm_params.weight reaches the target; a negative one is a configuration error."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "weight": 4}}]}, {})
    assert build_target(config.model_list[0], {}).weight_setting == 4.0
    bad = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "weight": -1}}]}, {})
    with pytest.raises(ConfigurationError):
        build_target(bad.model_list[0], {})


async def test_least_busy_counts_a_call_in_flight_while_it_runs():
    """Under least-busy, a call's attempt counts on its deployment until it ends, answered or not."""
    router = Router.from_config(parse_config(ROUTER_CONFIG, {}), {})
    target = router.targets("gpt")[0]
    seen: list[int] = []

    async def attempt():
        seen.append(router.in_flight[target.model_id])
        raise UpstreamError("down", 500)

    call = type("FakeCall", (), {"target": target, "request_id": "r", "attempted_retries": 0, "attempted_fallbacks": 0})()
    with pytest.raises(UpstreamError):
        await single_attempt(router, call, attempt)
    assert (seen, router.in_flight[target.model_id]) == ([1], 0)


def test_retry_after_is_honoured_up_to_a_minute():
    """retry-after-ms, then retry-after (seconds or an HTTP date) set the pause; over 60 s, unreadable or absent: the backoff."""
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({}) is None and retry_after_s({"retry-after": "soon"}) is None
    in_ten = retry_after_s({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert 8 < in_ten <= 10
    assert [retry_delay_after(1, ra) for ra in (2.0, 60.0, 61.0, 0.0, -1.0, None)] == [2.0, 60.0, 0.5, 0.5, 0.5, 0.5]
    assert retry_delay_after(3, 120.0) == 2.0


def test_a_deployments_num_retries_applies_unless_the_request_sets_its_own():
    """litellm_params.num_retries reaches the target (bounded); a plan uses it unless the request named num_retries."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "num_retries": 3}}]}, {})
    assert build_target(config.model_list[0], {}).num_retries == 3
    for bad in (11, -1, "2", True):
        wrong = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "num_retries": bad}}]}, {})
        with pytest.raises(ConfigurationError, match="num_retries"):
            build_target(wrong.model_list[0], {})
    policy = RouterPolicy(num_retries=1)
    assert plan_for(policy, "m", {}).retries_for(3) == 3
    assert plan_for(policy, "m", {}).retries_for(None) == 1
    assert plan_for(policy, "m", {"num_retries": 0}).retries_for(3) == 0
