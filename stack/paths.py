"""Where the stack keeps downloads (.cache, kept between runs) and run state (.run: pids, logs, data)."""

from __future__ import annotations

import os
from pathlib import Path

from shared.settings import run_dir_from_env

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TALLY_CACHE_DIR", ROOT / ".cache"))
RUN = run_dir_from_env(os.environ)
KAFKA_LIBS = CACHE / "kafka" / "libs"
PIDS = RUN / "pids"
LOGS = RUN / "logs"
