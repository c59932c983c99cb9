"""The alerts process's settings, read as LiteLLM reads them: `general_settings.alerting`
(["slack", "webhook"]), `general_settings.alerting_args`, `general_settings.spend_report_frequency`,
SLACK_WEBHOOK_URL and WEBHOOK_URL from the environment; Tally's own knobs as TALLY_ALERTS_*."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ConfigDict

from services.reports.alerts.core import Rules
from services.reports.alerts.spend_report import BadFrequency, frequency_days
from shared.config import ConfigError, ProxyConfig
from shared.settings import CommonSettings, env_float, env_int

CHANNELS = ("slack", "webhook")


class AlertSettings(CommonSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = 4005
    channels: tuple[str, ...] = ()
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None  # signs each body (HMAC-SHA256) when set
    rules: Rules = Rules()
    max_attempts: int = 5
    retry_first_s: float = 1.0
    retry_cap_s: float = 300.0
    send_timeout_s: float = 10.0
    poll_interval_s: float = 0.5
    spend_report_days: int | None = None  # general_settings.spend_report_frequency, to every channel
    report_check_interval_s: float = 300.0  # alerting_args.report_check_interval


def _thresholds(args: Mapping[str, Any]) -> tuple[Decimal, ...]:
    """alerting_args.budget_alert_thresholds: fractions of max_budget ([0.5, 0.8, 0.95]); percents
    above 1 are read as percents (50 → 0.5)."""
    raw = args.get("budget_alert_thresholds")
    if raw is None:
        return Rules().thresholds  # LiteLLM's: 15 % and 5 % of the budget left
    if not isinstance(raw, list) or not raw:
        raise ConfigError("general_settings.alerting_args.budget_alert_thresholds must be a non-empty list of numbers")
    fractions = []
    for value in raw:
        try:
            fraction = Decimal(str(value))
        except InvalidOperation as exc:
            raise ConfigError(f"budget_alert_thresholds: {value!r} is not a number") from exc
        fraction = fraction / 100 if fraction > 1 else fraction
        if not fraction.is_finite() or not 0 < fraction <= 1:
            raise ConfigError(f"budget_alert_thresholds: {value!r} is not between 0 and 100 %")
        fractions.append(fraction)
    return tuple(sorted(set(fractions)))


def alert_settings(config: ProxyConfig, common: Mapping[str, object], env: Mapping[str, str] | None = None) -> AlertSettings:
    env = os.environ if env is None else env
    general = config.general_settings.model_extra or {}
    alerting = general.get("alerting") or []
    if not isinstance(alerting, list) or not all(isinstance(c, str) for c in alerting):
        raise ConfigError("general_settings.alerting must be a list such as [\"slack\", \"webhook\"]")
    channels = tuple(c for c in alerting if c in CHANNELS)  # LiteLLM's other channels (email, ...) are not Tally's
    args = general.get("alerting_args") or {}
    if not isinstance(args, dict):
        raise ConfigError("general_settings.alerting_args must be a mapping")
    frequency = general.get("spend_report_frequency")
    try:
        report_days = frequency_days(str(frequency)) if frequency is not None and channels else None
    except BadFrequency as exc:
        raise ConfigError(f"general_settings.{exc}") from exc
    settings = AlertSettings(
        **common,  # type: ignore[arg-type]
        port=env_int(env, "TALLY_ALERTS_PORT", 4005),
        channels=channels,
        slack_webhook_url=env.get("SLACK_WEBHOOK_URL") or None,
        webhook_url=env.get("WEBHOOK_URL") or None,
        webhook_secret=env.get("TALLY_ALERTS_WEBHOOK_SECRET") or None,
        rules=Rules(thresholds=_thresholds(args)),
        max_attempts=env_int(env, "TALLY_ALERTS_MAX_ATTEMPTS", 5),
        retry_first_s=env_float(env, "TALLY_ALERTS_RETRY_FIRST_S", 1.0),
        retry_cap_s=env_float(env, "TALLY_ALERTS_RETRY_CAP_S", 300.0),
        send_timeout_s=env_float(env, "TALLY_ALERTS_SEND_TIMEOUT_S", 10.0),
        poll_interval_s=env_float(env, "TALLY_ALERTS_POLL_INTERVAL_S", 0.5),
        spend_report_days=report_days,
        report_check_interval_s=float(args.get("report_check_interval", 300)),
    )
    for channel, url, name in (("slack", settings.slack_webhook_url, "SLACK_WEBHOOK_URL"), ("webhook", settings.webhook_url, "WEBHOOK_URL")):
        if channel in channels and not url:
            raise ConfigError(f"general_settings.alerting has {channel!r} but {name} is not set")
    if settings.max_attempts < 1:
        raise ConfigError("TALLY_ALERTS_MAX_ATTEMPTS must be at least 1")
    return settings


def channel_urls(settings: AlertSettings) -> dict[str, str]:
    urls = {"slack": settings.slack_webhook_url, "webhook": settings.webhook_url}
    return {channel: urls[channel] for channel in settings.channels if urls[channel]}
