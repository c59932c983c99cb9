"""python -m services.proxy: read settings, load the price catalog, build the app, run it; with
TALLY_PROXY_WORKERS > 1, start that many such processes, this one accepting the connections and
handing them to the workers in turn (workers.py, handoff.py)."""

from __future__ import annotations

import os
import socket
import sys

from services.proxy.app import build_app
from services.proxy.errors import ConfigurationError
from services.proxy.settings import WORKER_ENV, proxy_settings_from_env
from services.proxy.transport.handoff import HANDOFF_FD_ENV, serve_handed_off
from services.proxy.transport.workers import WorkerParent, adopt_orphans
from shared.config import ConfigError
from shared.logging import configure_logging
from shared.pricing import CatalogError, load_catalog
from shared.service import SHUTDOWN_TIMEOUT_S, run_service, service_loop


def main() -> None:
    try:
        settings = proxy_settings_from_env()
        configure_logging("proxy", settings.common.log_level)
        catalog = load_catalog(*settings.price_maps)
        app = build_app(settings, catalog, env=dict(os.environ))
    except (ConfigError, CatalogError, ConfigurationError, ValueError) as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.worker == 0:
        adopt_orphans(settings.spool_root, settings.workers)
    if settings.workers > 1 and WORKER_ENV not in os.environ:
        # This process only checked the configuration above; the workers serve.
        sys.exit(WorkerParent(settings).run())
    handoff_fd = os.environ.get(HANDOFF_FD_ENV)
    if handoff_fd:  # a worker: the parent accepts and hands the connections over (handoff.py)
        serve_handed_off(app, socket.socket(fileno=int(handoff_fd)), service_loop(), SHUTDOWN_TIMEOUT_S)
    else:
        run_service(app, settings.common.host, settings.port)


if __name__ == "__main__":
    main()
