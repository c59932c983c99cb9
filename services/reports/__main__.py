"""python -m services.reports: read settings and config, load prices, run on REPORTS_PORT.
python -m services.reports alerts [list|resend ...]: the spend alerts process (docs/alerts.md)."""

from __future__ import annotations

import asyncio
import sys

from services.reports.app import add_warm_up, build_app
from services.reports.settings import reports_settings
from shared.config import ConfigError, load_config
from shared.logging import configure_logging
from shared.master_key import WeakMasterKey
from shared.service import run_service
from shared.settings import CommonSettings, common_from_env


def main() -> int:
    if sys.argv[1:2] == ["alerts"]:
        return alerts_main(sys.argv[2:])
    common = CommonSettings(**common_from_env())  # type: ignore[arg-type]
    try:
        config = load_config(common.config_path)
    except ConfigError as exc:
        print(f"reports: {exc}", file=sys.stderr)
        return 2
    settings = reports_settings(master_key_from_config=config.general_settings.master_key)
    configure_logging("reports", settings.log_level)
    catalog = None
    try:
        from shared.pricing import CatalogError, load_catalog
    except ImportError:
        print("reports: shared.pricing is missing; /spend/calculate will answer 503", file=sys.stderr)
    else:
        try:
            catalog = load_catalog(*settings.price_maps)
        except CatalogError as exc:
            print(f"reports: {exc}", file=sys.stderr)
            return 2
    try:
        app = build_app(settings, config, catalog)
    except WeakMasterKey as exc:
        print(f"reports: {exc}", file=sys.stderr)
        return 2
    add_warm_up(app)
    run_service(app, settings.host, settings.port)
    return 0


def alerts_main(argv: list[str]) -> int:
    """The alerts process with no arguments; otherwise the operator's commands."""
    from services.reports.alerts.app import build_app as build_alerts_app
    from services.reports.alerts.cli import run as run_alerts_command
    from services.reports.alerts.settings import alert_settings

    common = common_from_env()
    if argv:
        return asyncio.run(run_alerts_command(CommonSettings(**common), argv))  # type: ignore[arg-type]
    try:
        settings = alert_settings(load_config(CommonSettings(**common).config_path), common)  # type: ignore[arg-type]
    except (ConfigError, ValueError) as exc:
        print(f"reports alerts: {exc}", file=sys.stderr)
        return 2
    configure_logging("alerts", settings.log_level)
    run_service(build_alerts_app(settings), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

