"""The local spool: usage events that could not reach Kafka, kept on disk until they can.

One append-only JSON-lines file per proxy (`spool.jsonl`, one encoded UsageEvent per line),
fsync'd once per batch written. Draining first renames the active file to `*.draining` (so new
events go to a fresh file), sends every line, and deletes the file only once Kafka acknowledged
them all; a crash or a failed send leaves it to be sent again on the next attempt or restart.
Re-sending is safe: downstream deduplicates by request_id. A line torn by a crash mid-write is
skipped (and counted), never fatal."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

ACTIVE = "spool.jsonl"
DRAINING_SUFFIX = ".draining"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self.torn_lines = 0
        self.pending = self._count_existing()

    @property
    def active_path(self) -> Path:
        return self.directory / ACTIVE

    def _count_existing(self) -> int:
        return sum(1 for path in self._files() for _ in self.read(path))

    def _files(self) -> list[Path]:
        draining = sorted(self.directory.glob(f"*{DRAINING_SUFFIX}"))
        return draining + ([self.active_path] if self.active_path.exists() else [])

    def append(self, records: Iterable[bytes]) -> int:
        """Write one line per record and fsync once. Returns how many were written."""
        lines = [record.rstrip(b"\n") + b"\n" for record in records]
        if not lines:
            return 0
        if self._fd is None:
            self._fd = os.open(self.active_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.pending += len(lines)
        return len(lines)

    def claim(self) -> list[Path]:
        """Rotate the active file out and return every file waiting to be drained, oldest first."""
        if self.active_path.exists() and self.active_path.stat().st_size > 0:
            self._close_active()
            self.active_path.rename(self.directory / f"spool-{time.time_ns()}{DRAINING_SUFFIX}")
        return sorted(self.directory.glob(f"*{DRAINING_SUFFIX}"))

    def read(self, path: Path) -> Iterator[bytes]:
        """The complete lines of one spool file; a torn last line (no newline) is skipped."""
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    self.torn_lines += 1
                    log.warning("spool_torn_line_skipped", file=str(path), bytes=len(line))
                    continue
                line = line.rstrip(b"\n")
                if line:
                    yield line

    def release(self, path: Path, sent: int) -> None:
        """Every line of `path` reached Kafka: forget it."""
        path.unlink(missing_ok=True)
        self.pending = max(0, self.pending - sent)

    def _close_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_active()
