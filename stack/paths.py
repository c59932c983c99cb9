"""Where the stack keeps downloads (.cache, kept between runs) and run state (.run: pids, logs, data)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TALLY_CACHE_DIR", ROOT / ".cache"))
RUN = Path(os.environ.get("TALLY_RUN_DIR", ROOT / ".run"))
KAFKA_LIBS = CACHE / "kafka" / "libs"
PIDS = RUN / "pids"
LOGS = RUN / "logs"
