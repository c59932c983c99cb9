"""python -m services.reports: read settings and config, load prices, run on REPORTS_PORT."""

from __future__ import annotations

import sys

from services.reports.app import add_warm_up, build_app
from services.reports.settings import reports_settings
from shared.config import ConfigError, load_config
from shared.logging import configure_logging
from shared.master_key import WeakMasterKey
from shared.service import run_service
from shared.settings import CommonSettings, common_from_env


def main() -> int:
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


if __name__ == "__main__":
    sys.exit(main())

