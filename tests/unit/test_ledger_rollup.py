"""Rollup arithmetic: per-batch aggregation and running totals in budget windows."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.ledger.rollup import EntityState, LogFacts, advance, daily_deltas, entity_logs

T = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def log(rid: str, spend: str, at: datetime = T, *, success: bool = True, tags=("a",), team="t1", user="u1", end_user=None) -> LogFacts:
    return LogFacts(
        request_id=rid, api_key="k1", user_id=user, team_id=team, end_user=end_user, tags=tuple(tags), start_time=at,
        model="gpt-4o-mini", model_group="gpt-4o-mini", provider="openai", endpoint="/chat/completions",
        prompt_tokens=20, completion_tokens=80, cache_read_input_tokens=5, cache_creation_input_tokens=0,
        spend=Decimal(spend), success=success,
    )


def test_daily_deltas_sum_each_row_once_to_the_last_digit():
    """Two logs of one day become one row per table with exact sums and request counts."""
    deltas = daily_deltas([log("r1", "0.000051"), log("r2", "0.1", success=False)])
    team = deltas[("LiteLLM_DailyTeamSpend", "t1", "2026-03-01", "k1", "gpt-4o-mini", "openai", "/chat/completions")]
    assert (team.spend, team.api_requests, team.successful_requests, team.failed_requests) == (Decimal("0.100051"), 2, 1, 1)
    assert (team.prompt_tokens, team.completion_tokens, team.cache_read_input_tokens) == (40, 160, 10)
    assert sorted({k[0] for k in deltas}) == [
        "LiteLLM_DailyApiKeySpend", "LiteLLM_DailyTagSpend", "LiteLLM_DailyTeamSpend", "LiteLLM_DailyUserSpend",
    ]


def test_daily_deltas_split_by_utc_day_and_sort_their_keys():
    """Logs on two UTC days give two rows, and the rows come in sorted key order (deadlock-free writes)."""
    deltas = daily_deltas([log("r1", "1", T + timedelta(hours=13)), log("r2", "2", T)])
    keys = list(deltas)
    assert keys == sorted(keys)
    days = {k[2] for k in keys if k[0] == "LiteLLM_DailyApiKeySpend"}
    assert days == {"2026-03-01", "2026-03-02"}


def test_entity_logs_groups_by_every_entity_and_tag():
    """A log adds to its key, team, user, customer and each of its tags."""
    grouped = entity_logs([log("r1", "1", tags=("a", "b"), end_user="c1")])
    assert list(grouped) == [("customer", "c1"), ("key", "k1"), ("tag", "a"), ("tag", "b"), ("team", "t1"), ("user", "u1")]
    assert grouped[("tag", "a")] == [(T, Decimal("1"))]


def test_advance_adds_within_the_window():
    """New logs in the current window add to the running spend."""
    state = EntityState("key", "k1", anchor=T, duration=timedelta(days=1), spend=Decimal("1.5"), window_start=T, as_of=T)
    after = advance(state, [(T + timedelta(hours=1), Decimal("0.25"))], None)
    assert (after.spend, after.window_start, after.as_of, after.budget_reset_at) == (
        Decimal("1.75"), T, T + timedelta(hours=1), T + timedelta(days=1))


def test_advance_starts_a_new_window_from_zero():
    """A log in the next window starts spend afresh; a late log from the old window is not counted."""
    state = EntityState("key", "k1", anchor=T, duration=timedelta(days=1), spend=Decimal("9"), window_start=T, as_of=T)
    after = advance(state, [(T + timedelta(days=1, hours=2), Decimal("2")), (T + timedelta(hours=3), Decimal("5"))], None)
    assert (after.spend, after.window_start) == (Decimal("2"), T + timedelta(days=1))


def test_advance_ignores_logs_before_a_spend_reset_for_keys_and_teams_only():
    """A reset at R: a key counts only logs at or after R; a user is not reset."""
    reset = T + timedelta(minutes=10)
    logs = [(T, Decimal("1")), (T + timedelta(minutes=20), Decimal("2"))]
    key = advance(EntityState("key", "k1"), logs, reset)
    user = advance(EntityState("user", "u1"), logs, reset)
    assert (key.spend, key.window_start) == (Decimal("2"), reset)
    assert (user.spend, user.window_start) == (Decimal("3"), None)


def test_advance_is_order_independent():
    """Feeding the same logs in any split and order gives the same final state (replay = live)."""
    state = EntityState("team", "t1", anchor=T, duration=timedelta(hours=1))
    logs = [(T + timedelta(minutes=m), Decimal(m) / 100) for m in (5, 70, 65, 130, 10, 125)]
    all_at_once = advance(state, logs, None)
    one_by_one = state
    for item in reversed(logs):
        one_by_one = advance(one_by_one, [item], None)
    assert all_at_once == one_by_one
    assert all_at_once.spend == Decimal("2.55") and all_at_once.window_start == T + timedelta(hours=2)


def test_spend_logs_name_the_model_without_its_provider_prefix():
    """As in LiteLLM's logs (and the seed's reports): "groq/llama3-8b-8192" is logged as "llama3-8b-8192"."""
    from datetime import datetime, timezone

    from services.ledger.rows import logged_model
    from shared.events import UsageEvent

    t0 = datetime(2024, 5, 13, tzinfo=timezone.utc)

    def event(model: str, provider: str | None) -> UsageEvent:
        return UsageEvent(request_id="r", call_type="acompletion", start_time=t0, end_time=t0, api_key_hash="k",
                          model_group="g", model=model, custom_llm_provider=provider)

    assert [logged_model(event("groq/llama3-8b-8192", "groq")), logged_model(event("azure/chatgpt-v-2", "azure")),
            logged_model(event("gpt-4o", "openai")), logged_model(event("ft:gpt-4o:org", None))] == [
        "llama3-8b-8192", "chatgpt-v-2", "gpt-4o", "ft:gpt-4o:org"]
