"""python -m services.pricer: read settings, load the price catalog, run."""

from __future__ import annotations

import sys

from services.pricer.app import build_app
from services.pricer.settings import pricer_settings
from shared.logging import configure_logging
from shared.pricing import CatalogError, load_catalog
from shared.service import run_service


def main() -> int:
    settings = pricer_settings()
    configure_logging("pricer", settings.log_level)
    try:
        catalog = load_catalog(*settings.price_maps)
    except CatalogError as exc:
        print(f"pricer: {exc}", file=sys.stderr)
        return 2
    run_service(build_app(settings, catalog), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
