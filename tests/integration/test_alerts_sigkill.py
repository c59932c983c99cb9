"""The alerts process SIGKILLed between its decision and the delivery's answer sends the alert
exactly once after a restart."""

from __future__ import annotations

import asyncio
import signal
import sys

import psycopg

from shared.settings import CommonSettings
from tests.fixtures.alerts import Receiver, alerts_env, key_total, key_with_budget, publish, receiving
from tests.fixtures.polling import eventually_async
from tests.fixtures.stack import ROOT, free_port


async def start_alerts(settings: CommonSettings, config: str, webhook_url: str) -> asyncio.subprocess.Process:
    env = alerts_env(settings, TALLY_CONFIG=config, WEBHOOK_URL=webhook_url, TALLY_ALERTS_PORT=str(free_port()),
                     TALLY_ALERTS_SEND_TIMEOUT_S="1", TALLY_ALERTS_RETRY_FIRST_S="0.1", TALLY_ALERTS_POLL_INTERVAL_S="0.1")
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "services.reports", "alerts", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


def statuses(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT status, attempts FROM tally_alerts.deliveries ORDER BY id").fetchall()


async def test_sigkill_between_decision_and_delivery_sends_once(settings: CommonSettings, tmp_path):
    """Killed while its POST is unanswered, the restarted process sends the recorded alert once."""
    config = tmp_path / "config.yaml"
    config.write_text("general_settings:\n  alerting: [\"webhook\"]\n  alerting_args:\n    budget_alert_thresholds: [50, 80, 95]\n")
    receiver = Receiver(hold=asyncio.Event())
    async with receiving(receiver):
        process = await start_alerts(settings, str(config), receiver.url)
        try:
            await publish(settings, key_with_budget("k9", "10"), key_total("k9", "5"))
            await eventually_async(lambda: receiver.got, 60, "the POST in flight")
            assert statuses(settings.database_url) == [("pending", 0)]
            process.send_signal(signal.SIGKILL)
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        receiver.hold = None
        process = await start_alerts(settings, str(config), receiver.url)
        try:
            await eventually_async(lambda: receiver.accepted(), 60, "the alert delivered after the restart")
            await eventually_async(lambda: statuses(settings.database_url) == [("sent", 1)], 30, "the delivery recorded sent")
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    assert [r.status for r in receiver.got] == [0, 200]  # the killed attempt unanswered, then one accepted
    assert receiver.got[0].body == receiver.got[1].body
    assert receiver.got[0].headers["X-Tally-Alert-Id"] == receiver.got[1].headers["X-Tally-Alert-Id"]
