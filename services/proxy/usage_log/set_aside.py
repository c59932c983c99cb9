"""Spooled usage records Kafka refuses for a reason of their own (too large, not a usage event),
set aside so that the drain goes on with the records after them.

Each is one bounded JSON line in `set-aside.jsonl` in the spool directory: when, why, where it
came from, its size, its request_id when one can be found, and an excerpt. A record longer than
the excerpt is also kept whole in `set-aside/<time>-<n>.raw`, for an operator to look at. Nothing
here is retried automatically: a set-aside record is fixed and fed back by hand (docs/usage-log.md).
Both are fsync'd before the drain moves past the record."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import orjson

from services.proxy.usage_log.journal import tail_state, write_all

SET_ASIDE = "set-aside.jsonl"
RAW_DIR = "set-aside"
EXCERPT_BYTES = 2048
REASON_CHARS = 500
_REQUEST_ID = re.compile(rb'"request_id":"([^"\\]{1,256})"')


def request_id_of(raw: bytes) -> str | None:
    found = _REQUEST_ID.search(raw)
    return found.group(1).decode(errors="replace") if found else None


class SetAside:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SET_ASIDE
        self._raw_count = 0

    def add(self, items: list[tuple[bytes, str]], source: str) -> None:
        """Record each (raw record, reason) from spool file `source`. Raises OSError when the
        disk refuses: then nothing is taken as set aside and the drain stays where it was."""
        if not items:
            return
        now = datetime.now(timezone.utc)
        lines = []
        for raw, reason in items:
            entry: dict[str, object] = {
                "time": now.isoformat(), "reason": reason[:REASON_CHARS], "source": source, "bytes": len(raw),
                "request_id": request_id_of(raw), "excerpt": raw[:EXCERPT_BYTES].decode(errors="replace"),
            }
            if len(raw) > EXCERPT_BYTES:
                entry["raw_file"] = self._keep_raw(raw, now)
            lines.append(orjson.dumps(entry) + b"\n")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size, torn = tail_state(fd)
            write_all(fd, (b"\n" if torn else b"") + b"".join(lines), self.path, size, sync=True)
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, object]]:
        """What was set aside so far, oldest first (for tests and operators)."""
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().split(b"\n") if line.strip()]

    def _keep_raw(self, raw: bytes, now: datetime) -> str:
        directory = self.directory / RAW_DIR
        directory.mkdir(exist_ok=True)
        self._raw_count += 1
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}-{self._raw_count}.raw"
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, raw, path, 0, sync=True)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return f"{RAW_DIR}/{name}"
