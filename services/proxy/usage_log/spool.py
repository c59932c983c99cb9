"""The local spool: usage events that could not reach Kafka, kept on disk until they can.

One append-only JSON-lines file per proxy (`spool.jsonl`, one encoded UsageEvent per line),
fsync'd once per batch written; a batch is written whole or not at all (a failed write is cut back,
see journal.write_all), and lines are self-delimiting as in the journal. Draining first renames the
active file to `*.draining` (so new events go to a fresh file) and sends its lines in order. How
many leading lines are done (acknowledged by Kafka or set aside) is kept durably in a `*.acked`
marker beside it, so a file whose drain stops part-way resumes where it stopped instead of sending
its first lines again; the file goes once every line is done. A crash can still re-send the lines
of the last unmarked stretch: re-sending is safe, downstream deduplicates by request_id."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from services.proxy.usage_log.journal import is_record, tail_state, write_all

log = structlog.get_logger(__name__)

ACTIVE = "spool.jsonl"
DRAINING_SUFFIX = ".draining"
PROGRESS_SUFFIX = ".acked"
PROBE = "write-probe"
PROBE_BYTES = 64 * 1024  # room a write probe must find before the usage log counts as writable
_MARKER_WIDTH = 20  # fixed width: rewriting the marker in place never needs a new disk block


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._size = 0
        self._torn = False
        self._progress: dict[Path, int] = {}  # ahead of a marker the disk refused to update
        self.torn_lines = 0
        self.pending = sum(len(self.read(path)) - self.progress(path) for path in self._files())

    @property
    def active_path(self) -> Path:
        return self.directory / ACTIVE

    def _files(self) -> list[Path]:
        draining = sorted(self.directory.glob(f"*{DRAINING_SUFFIX}"))
        return draining + ([self.active_path] if self.active_path.exists() else [])

    def append(self, records: Iterable[bytes]) -> int:
        """Write one line per record and fsync once, all or nothing. Returns how many were
        written; raises OSError (naming the file) when they could not be."""
        lines = [record.rstrip(b"\n") + b"\n" for record in records]
        if not lines:
            return 0
        if self._fd is None:
            fd = os.open(self.active_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            self._size, self._torn = tail_state(fd)
            self._fd = fd
        fragment = self._torn  # a torn last line: the newline makes it a line of its own
        data = (b"\n" if fragment else b"") + b"".join(lines)
        try:
            write_all(self._fd, data, self.active_path, self._size, sync=True)
        except OSError:
            self._torn = True  # until the file itself says the cut worked
            self._size, self._torn = tail_state(self._fd)
            raise
        self._size += len(data)
        self._torn = False
        self.pending += len(lines) + fragment
        return len(lines)

    def claim(self) -> list[Path]:
        """Rotate the active file out and return every file waiting to be drained, oldest first."""
        if self.active_path.exists() and self.active_path.stat().st_size > 0:
            self._close_active()
            self.active_path.rename(self.directory / f"spool-{time.time_ns()}{DRAINING_SUFFIX}")
        return sorted(self.directory.glob(f"*{DRAINING_SUFFIX}"))

    def read(self, path: Path) -> list[bytes]:
        """The lines of one spool file. A last line without newline is a write torn by a crash and
        skipped (counted in `torn_lines`) unless it is a whole record; a line that is not a record
        is returned like the others, for the drain to set aside."""
        lines = path.read_bytes().split(b"\n")
        last = lines.pop()  # b"" when the file ends with a newline
        if last.strip():
            if is_record(last):
                lines.append(last)
            else:
                self.torn_lines += 1
                log.warning("spool_torn_line_skipped", file=str(path), bytes=len(last))
        return [line for line in lines if line.strip()]

    def progress(self, path: Path) -> int:
        """How many leading lines of a draining file are done (0 when it has no marker)."""
        if path in self._progress:
            return self._progress[path]
        marker = path.with_suffix(PROGRESS_SUFFIX)
        try:
            text = marker.read_bytes().strip()
        except FileNotFoundError:
            return 0
        if text.isdigit():
            return int(text)
        log.warning("spool_marker_unreadable", file=str(marker), content=text[:40].decode(errors="replace"))
        return 0  # the whole file is sent again: downstream keeps one copy

    def advance(self, path: Path, done: int) -> None:
        """The first `done` lines of `path` are done: record it durably. When the disk refuses
        (OSError), this process still remembers it and does not send those lines again."""
        previous = self.progress(path)
        self._progress[path] = done
        self.pending = max(0, self.pending - (done - previous))
        marker = path.with_suffix(PROGRESS_SUFFIX)
        data = str(done).zfill(_MARKER_WIDTH).encode() + b"\n"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(marker)) from exc

    def release(self, path: Path, handled: int) -> None:
        """The last `handled` lines of `path` are done too (every line is): forget the file."""
        path.unlink(missing_ok=True)
        path.with_suffix(PROGRESS_SUFFIX).unlink(missing_ok=True)
        self._progress.pop(path, None)
        self.pending = max(0, self.pending - handled)

    def probe(self) -> None:
        """Write, fsync and delete PROBE_BYTES: raises OSError while the directory cannot take them."""
        path = self.directory / PROBE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, b"\0" * PROBE_BYTES, path, 0, sync=True)
            finally:
                os.close(fd)
        finally:
            path.unlink(missing_ok=True)

    def _close_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_active()
