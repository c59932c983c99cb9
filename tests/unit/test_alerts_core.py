"""The alerts' pure core: crossings, their keys, LiteLLM's payload and Slack's message; the
config reader; the signature and the retry delays."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from services.reports.alerts.core import Budget, Rules, alert_key, budget_of, crossings, slack_message, webhook_event
from services.reports.alerts.delivery import retry_delay, signature
from services.reports.alerts.settings import alert_settings
from services.reports.jsonout import dumps
from shared.config import ConfigError, parse_config
from shared.events import EntityChanged, EntityTotal

START = datetime(2026, 12, 1, tzinfo=timezone.utc)
RULES = Rules(thresholds=(Decimal("0.5"), Decimal("0.8"), Decimal("0.95")))
KEY = Budget("key", "hash1", max_budget=Decimal("10"), key_alias="ci", user_id="u1", team_id="t1")


def total(spend: str, *, after: timedelta = timedelta(hours=1), start: datetime | None = START, entity: str = "hash1") -> EntityTotal:
    return EntityTotal(entity_type="key", entity_id=entity, spend=Decimal(spend), window_start=start,
                       as_of=(start or START) + after)


def kinds(spend: str, budget: Budget = KEY, **kw: object) -> list[str]:
    return [c.kind for c in crossings(budget, total(spend, **kw), RULES)]


def test_below_every_threshold_nothing():
    """Under 50 % of max_budget no crossing is reached."""
    assert kinds("4.999999") == []


def test_thresholds_reached_lowest_first():
    """A total at 95 % has reached 50, 80 and 95 %, in that order; 100 % adds the budget crossing."""
    assert kinds("9.5") == ["threshold:0.5", "threshold:0.8", "threshold:0.95"]
    assert kinds("10") == ["threshold:0.5", "threshold:0.8", "threshold:0.95", "max_budget"]


def test_soft_budget_sorted_by_amount():
    """The soft budget takes its place among the thresholds by amount."""
    budget = Budget("key", "hash1", max_budget=Decimal("10"), soft_budget=Decimal("6"))
    assert kinds("8", budget) == ["threshold:0.5", "soft_budget", "threshold:0.8"]


def test_no_max_budget_only_soft():
    """Without max_budget only the soft budget can be crossed."""
    assert kinds("100", Budget("team", "t1", soft_budget=Decimal("1"))) == ["soft_budget"]


def test_projection_past_the_budget():
    """In a 30-day window, $4 spent in the first 6 days projects $20 > $10 on day 15."""
    budget = Budget("key", "hash1", max_budget=Decimal("10"), duration=timedelta(days=30))
    found = crossings(budget, total("4", after=timedelta(days=6)), RULES)
    assert [c.kind for c in found] == ["projected"]
    assert found[0].projected_spend == Decimal("20")
    assert found[0].projected_exceeded_date == START + timedelta(days=15)


def test_projection_waits_for_a_tenth_of_the_window():
    """A burn rate from under 10 % of the window is not trusted."""
    budget = Budget("key", "hash1", max_budget=Decimal("10"), duration=timedelta(days=30))
    assert kinds("4", budget, after=timedelta(days=2)) == []


def test_key_names_entity_window_and_crossing():
    """The idempotency key changes with the window start (a new window or a reset re-arms)."""
    crossing = crossings(KEY, total("5"), RULES)[0]
    assert alert_key(total("5"), crossing) == "key:hash1:2026-12-01T00:00:00+00:00:threshold:0.5"
    assert alert_key(total("5", start=None), crossing) == "key:hash1:-:threshold:0.5"
    later = total("5", start=START + timedelta(days=30))
    assert alert_key(later, crossing) != alert_key(total("5"), crossing)


def test_webhook_event_is_litellms():
    """The webhook body has LiteLLM's WebhookEvent fields, money as exact JSON numbers."""
    crossing = crossings(KEY, total("10.000000001"), RULES)[-1]
    body = orjson.loads(dumps(webhook_event(KEY, total("10.000000001"), crossing)))
    assert body == {
        "spend": 10.000000001, "max_budget": 10, "soft_budget": None, "token": "hash1", "customer_id": None,
        "user_id": "u1", "team_id": "t1", "team_alias": None, "user_email": None, "key_alias": "ci",
        "projected_exceeded_date": None, "projected_spend": None, "event": "budget_crossed", "event_group": "key",
        "event_message": "Key Budget: Budget Crossed\n Total Budget:`10`",
    }
    assert b'"spend":10.000000001' in dumps(webhook_event(KEY, total("10.000000001"), crossing))


def test_slack_message_shape():
    """Slack gets {"text": ...} with LiteLLM's level, timestamp and message lines."""
    crossing = crossings(KEY, total("5"), RULES)[0]
    event = webhook_event(KEY, total("5"), crossing)
    text = slack_message(event, START + timedelta(hours=1, minutes=2, seconds=3))["text"]
    assert text.startswith("Level: `High`\nTimestamp: `01:02:03`\n\nMessage: Key Budget: 50% Threshold Crossed\n\n")
    assert "\nspend: 5\n" in text and "\nkey_alias: ci\n" in text and "\nevent: threshold_crossed\n" in text


def test_budget_of_entity_state():
    """A key's admin state gives its budget; a deletion gives none; a bad field counts as unset."""
    change = EntityChanged(entity_type="key", entity_id="h", state={"max_budget": "2.5", "soft_budget": "x",
                                                                     "budget_duration": "30d", "key_alias": "a", "team_id": "t"})
    assert budget_of(change) == Budget("key", "h", Decimal("2.5"), None, timedelta(days=30), "a", None, "t")
    assert budget_of(EntityChanged(entity_type="key", entity_id="h", deleted=True)) is None
    team = EntityChanged(entity_type="team", entity_id="t9", state={"max_budget": 1, "team_alias": "ops"})
    assert budget_of(team) == Budget("team", "t9", Decimal("1"), team_id="t9", team_alias="ops")


def test_settings_read_as_litellm():
    """general_settings.alerting, alerting_args and the webhook URLs from the environment."""
    config = parse_config({"general_settings": {"alerting": ["slack", "webhook", "email"],
                                                "alerting_args": {"budget_alert_thresholds": [50, 80, 0.95]}}}, {})
    settings = alert_settings(config, {}, {"SLACK_WEBHOOK_URL": "http://s", "WEBHOOK_URL": "http://w"})
    assert settings.channels == ("slack", "webhook")
    assert settings.rules.thresholds == (Decimal("0.5"), Decimal("0.8"), Decimal("0.95"))
    assert settings.slack_webhook_url == "http://s" and settings.webhook_url == "http://w"


@pytest.mark.parametrize("general, env, message", [
    ({"alerting": ["webhook"]}, {}, "WEBHOOK_URL is not set"),
    ({"alerting": "slack"}, {}, "must be a list"),
    ({"alerting_args": {"budget_alert_thresholds": [150]}}, {}, "between 0 and 100"),
    ({"alerting_args": {"budget_alert_thresholds": ["x"]}}, {}, "not a number"),
])
def test_settings_refuse_bad_config(general, env, message):
    """A config the alerts cannot use is refused with a message naming the problem."""
    with pytest.raises(ConfigError, match=message):
        alert_settings(parse_config({"general_settings": general}, {}), {}, env)


def test_signature_is_hmac_sha256_of_the_body():
    """The signature header is sha256=<hex HMAC-SHA256(secret, body)>."""
    expected = hmac.new(b"s3cret", b'{"a":1}', hashlib.sha256).hexdigest()
    assert signature("s3cret", b'{"a":1}') == f"sha256={expected}"


def test_retry_delays_double_up_to_the_cap():
    """After the 1st, 2nd, 3rd, 4th failure: 1, 2, 4, then capped at 5 seconds."""
    assert [retry_delay(1.0, 5.0, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
