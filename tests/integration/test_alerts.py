"""The alerts process against real Kafka and Postgres and a webhook receiver over real HTTP:
one alert per threshold in order with LiteLLM's payload, retries on 5xx, Slack's shape, a replay
that sends nothing again, dead letters an operator lists and resends."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from decimal import Decimal

import orjson
import psycopg

from services.reports.alerts.app import build_app
from shared.settings import CommonSettings
from tests.fixtures.alerts import WINDOW_START, Receiver, alerts_command, alerts_settings_for, key_total, key_with_budget, publish, receiving
from tests.fixtures.polling import eventually_async
from tests.fixtures.stack import serving
from tests.fixtures.stages import metric


def deliveries(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT channel, event, status, attempts FROM tally_alerts.deliveries ORDER BY id").fetchall()


async def test_key_across_thresholds_one_alert_each_in_order(settings: CommonSettings):
    """Totals of a $10 key rising past 50/80/95/100 % (some twice) give exactly four alerts, in
    order, with LiteLLM's webhook fields; totals after that give none."""
    async with receiving(Receiver()) as receiver, serving(build_app(alerts_settings_for(settings, webhook_url=receiver.url))):
        await publish(settings, key_with_budget("k1", "10"),
                      *[key_total("k1", spend, minutes) for minutes, spend in enumerate(["3", "5", "5.5", "8", "9.499", "9.5", "10", "12"], 1)])
        await eventually_async(lambda: len(receiver.got) >= 4, 30, "four alerts")
        await publish(settings, key_total("k1", "13", 20), key_with_budget("marker", "10"), key_total("marker", "5", 21))
        await eventually_async(lambda: len(receiver.got) >= 5, 30, "the marker's alert")
    bodies = [orjson.loads(r.body) for r in receiver.got]
    assert [(b["event"], b["event_message"], b["spend"]) for b in bodies[:4]] == [
        ("threshold_crossed", "Key Budget: 50% Threshold Crossed", 5),
        ("threshold_crossed", "Key Budget: 80% Threshold Crossed", 8),
        ("threshold_crossed", "Key Budget: 95% Threshold Crossed", 9.5),
        ("budget_crossed", "Key Budget: Budget Crossed\n Total Budget:`10`", 10),
    ]
    assert bodies[3] == {"spend": 10, "max_budget": 10, "soft_budget": None, "token": "k1", "customer_id": None,
                         "user_id": "u1", "team_id": None, "team_alias": None, "user_email": None, "key_alias": "alias-k1",
                         "projected_exceeded_date": None, "projected_spend": None, "event": "budget_crossed",
                         "event_group": "key", "event_message": "Key Budget: Budget Crossed\n Total Budget:`10`"}
    assert [b["token"] for b in bodies[4:]] == ["marker"]
    assert receiver.got[0].headers["Content-Type"] == "application/json"


async def test_receiver_failing_three_times_gets_the_alert_once(settings: CommonSettings):
    """500, 500, 500, then 200: four attempts of the same signed body, accepted once, recorded sent."""
    secret = "whsec-test"
    async with receiving(Receiver(statuses=[500, 500, 500])) as receiver:
        app = build_app(alerts_settings_for(settings, webhook_url=receiver.url, webhook_secret=secret))
        async with serving(app) as base:
            await publish(settings, key_with_budget("k2", "2"), key_total("k2", "1"))
            await eventually_async(lambda: receiver.accepted(), 30, "the alert accepted")
            assert await metric(base, "tally_alerts_sent_total") == 1.0
            assert await metric(base, "tally_alerts_retried_total") == 3.0
    assert [r.status for r in receiver.got] == [500, 500, 500, 200]
    assert len({r.body for r in receiver.got}) == 1 and len({r.headers["X-Tally-Alert-Id"] for r in receiver.got}) == 1
    expected = "sha256=" + hmac.new(secret.encode(), receiver.got[0].body, hashlib.sha256).hexdigest()
    assert receiver.got[3].headers["X-Tally-Signature"] == expected
    assert deliveries(settings.database_url) == [("webhook", "threshold_crossed", "sent", 4)]


async def test_replay_of_the_topics_sends_nothing_again(settings: CommonSettings):
    """With its offsets forgotten, the process reads both topics from the start and sends only
    what a new total crosses."""
    async with receiving(Receiver()) as receiver:
        async with serving(build_app(alerts_settings_for(settings, webhook_url=receiver.url))):
            await publish(settings, key_with_budget("k3", "4"), key_total("k3", "2"), key_total("k3", "3.3", 2))
            await eventually_async(lambda: len(receiver.got) >= 2, 30, "two alerts")
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("DELETE FROM tally_alerts.offsets")
        async with serving(build_app(alerts_settings_for(settings, webhook_url=receiver.url))):
            await publish(settings, key_total("k3", "2.5", 1, start=WINDOW_START + timedelta(days=1)))
            await eventually_async(lambda: len(receiver.got) >= 3, 30, "the new window's alert")
    events = [(orjson.loads(r.body)["event"], orjson.loads(r.body)["spend"]) for r in receiver.got]
    assert events == [("threshold_crossed", 2), ("threshold_crossed", 3.3), ("threshold_crossed", 2.5)]


async def test_slack_receiver_gets_incoming_webhook_text(settings: CommonSettings):
    """Slack's channel gets {"text": ...} in LiteLLM's budget-alert layout."""
    async with receiving(Receiver()) as receiver:
        app = build_app(alerts_settings_for(settings, channels=("slack",), slack_webhook_url=receiver.url))
        async with serving(app):
            await publish(settings, key_with_budget("k4", "10", soft_budget="1"), key_total("k4", "1.25", 62))
            await eventually_async(lambda: receiver.got, 30, "a Slack message")
    body = orjson.loads(receiver.got[0].body)
    assert list(body) == ["text"]
    assert body["text"] == ("Level: `High`\nTimestamp: `01:02:00`\n\nMessage: Soft Budget Crossed: Total Soft Budget:`1`\n\n"
                            "\nspend: 1.25\n\nmax_budget: 10\n\nsoft_budget: 1\n\ntoken: k4\n\nuser_id: u1\n"
                            "\nkey_alias: alias-k4\n\nevent: soft_budget_crossed\n\nevent_group: key\n")


async def test_refused_alert_is_dead_then_listed_and_resent(settings: CommonSettings):
    """A 400 dead-letters at once; `alerts list` shows it; `alerts resend --all` delivers it."""
    async with receiving(Receiver(statuses=[400])) as receiver:
        async with serving(build_app(alerts_settings_for(settings, webhook_url=receiver.url))) as base:
            await publish(settings, key_with_budget("k5", "1"), key_total("k5", "0.5"))
            await eventually_async(lambda: deliveries(settings.database_url) == [("webhook", "threshold_crossed", "dead", 1)],
                                   30, "the delivery dead")
            assert await metric(base, "tally_alerts_failed_total") == 1.0
        code, out, err = await alerts_command(settings, "list")
        assert code == 0, err
        assert "\tdead\twebhook\tthreshold_crossed\tkey:k5:2026-12-01T00:00:00+00:00:threshold:0.5\tattempts=1\t" in out
        assert out.rstrip().endswith("HTTP 400")
        async with serving(build_app(alerts_settings_for(settings, webhook_url=receiver.url))):
            assert await alerts_command(settings, "resend", "--all") == (0, "1 deliveries pending again\n", "")
            await eventually_async(lambda: receiver.accepted(), 30, "the resent alert accepted")
    assert [r.status for r in receiver.got] == [400, 200]
    assert deliveries(settings.database_url) == [("webhook", "threshold_crossed", "sent", 1)]
    assert Decimal(str(orjson.loads(receiver.got[1].body)["spend"])) == Decimal("0.5")


async def test_two_instances_send_each_alert_once(settings: CommonSettings):
    """Two alert processes on the same topics and database: every crossing reaches the receiver once."""
    async with receiving(Receiver()) as receiver:
        first = build_app(alerts_settings_for(settings, webhook_url=receiver.url))
        second = build_app(alerts_settings_for(settings, webhook_url=receiver.url))
        async with serving(first), serving(second):
            await publish(settings, key_with_budget("k6", "10"), *[key_total("k6", s, m) for m, s in enumerate(["5", "8", "9.5", "10"], 1)])
            await eventually_async(lambda: deliveries(settings.database_url) == [("webhook", e, "sent", 1) for e in
                                                                                  ["threshold_crossed"] * 3 + ["budget_crossed"]],
                                   30, "four deliveries sent")
            await publish(settings, key_with_budget("marker", "10"), key_total("marker", "5", 21))
            await eventually_async(lambda: len(deliveries(settings.database_url)) == 5 and len(receiver.got) >= 5, 30, "the marker sent")
    assert [orjson.loads(r.body)["spend"] for r in receiver.got] == [5, 8, 9.5, 10, 5]


async def test_migrations_run_again_into_a_replay_schema(settings: CommonSettings):
    """A ledger replay migrates a fresh schema: the alerts' tables (their own schema) stay, with their rows."""
    from shared.migrations import migrate

    with psycopg.connect(settings.database_url) as conn:
        conn.execute("INSERT INTO tally_alerts.deliveries (alert_key, channel, entity_type, entity_id, event, body)"
                     " VALUES ('k', 'webhook', 'key', 'h', 'budget_crossed', '{}')")
    assert 10 in await migrate(settings.database_url, schema="tally_replay_test")
    assert deliveries(settings.database_url) == [("webhook", "budget_crossed", "pending", 0)]
