"""python -m services.pricer                      run the pricer (health and metrics on PRICER_PORT, 4002)
python -m services.pricer dlq list|show|replay   what the pricer set aside, and feeding it back"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.pricer.app import build_app
from services.pricer.settings import pricer_settings
from shared.dlq_repair import add_dlq_parser
from shared.logging import configure_logging
from shared.pricing import CatalogError, load_catalog
from shared.service import run_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.pricer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dlq_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    settings = pricer_settings()
    configure_logging("pricer", settings.log_level)
    if args.command == "dlq":
        from services.pricer.dlq import run

        return asyncio.run(run(settings, args))
    try:
        catalog = load_catalog(*settings.price_maps)
    except CatalogError as exc:
        print(f"pricer: {exc}", file=sys.stderr)
        return 2
    run_service(build_app(settings, catalog), settings.host, settings.port, stop_deadline_s=settings.stop_deadline_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
