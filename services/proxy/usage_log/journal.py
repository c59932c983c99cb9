"""The write-ahead journal of usage events: what makes an answered call survive a SIGKILL.

Every event is written to the journal (one write(2), no fsync) before its call is answered. A
process killed at any moment after that leaves the line in the kernel's page cache, so the file
holds it. Lines are grouped in segments; a segment is deleted once it is sealed and every event in
it was acknowledged by Kafka or moved to the fsync'd spool. On start-up, segments a previous
process left behind go to the spool, which sends them: an event Kafka had already acknowledged is
sent twice, and downstream keeps one (the request_id is the idempotency key). Each process writes
only segments it created itself; it never appends to a file a previous process left.

Lines are self-delimiting: a write that fails part-way (disk full) is cut back to where it began,
and if even that fails the segment's next line starts with a newline, so a torn fragment is always
a line of its own and never swallows the complete line after it. Recovery keeps every complete
JSON line and skips (and counts) torn fragments.

What this does not cover is the machine itself losing power before the kernel wrote the page
cache out; the spool's fsync covers events that reach it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

log = structlog.get_logger(__name__)

PREFIX = "journal-"
SUFFIX = ".jsonl"
RECORD_START = b'{"event_id":'  # how every encoded usage event begins


def is_record(line: bytes) -> bool:
    """A complete JSON object: what a whole line holds (a torn fragment never parses)."""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def recover_lines(data: bytes) -> tuple[list[bytes], int]:
    """Every complete record in `data` (JSON lines), and how many torn fragments were skipped.

    A line that is not a record may be a torn fragment glued to the complete record after it (a
    journal left by a version whose lines are not self-delimiting): the record is recovered from
    where it starts."""
    records: list[bytes] = []
    torn = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        if is_record(line):
            records.append(line)
            continue
        torn += 1
        start = line.rfind(RECORD_START)
        if start > 0 and is_record(line[start:]):
            records.append(line[start:])
    return records, torn


def write_all(fd: int, data: bytes, path: Path, start: int, *, sync: bool = False) -> None:
    """Append `data` to a file of `start` bytes (and fsync it if `sync`) whole or not at all: a
    failed write is cut back to where it began. Raises OSError naming the file; if the cut fails
    too, `tail_state` tells the caller to start its next line afresh."""
    try:
        written = os.write(fd, data)
        if written < len(data):  # a short write (disk full, a signal): the rest after it
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, start)
        except OSError as cut:
            log.warning("usage_log_cut_failed", file=str(path), error=str(cut))
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def tail_state(fd: int) -> tuple[int, bool]:
    """The file's size, and whether its last line is torn (no newline at the end)."""
    size = os.fstat(fd).st_size
    return size, size > 0 and os.pread(fd, 1, size - 1) != b"\n"


@dataclass
class Segment:
    path: Path
    fd: int | None
    written: int = 0
    done: int = 0
    size: int = 0  # bytes: only this process writes the file
    torn: bool = False  # a failed write left bytes without a newline at the end

    @property
    def sealed(self) -> bool:
        return self.fd is None


class Journal:
    def __init__(self, directory: Path, segment_events: int = 10_000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_events = segment_events
        # Left behind by a previous process: read them before this one writes its own.
        self.leftovers = sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))
        self.torn_lines = 0  # torn fragments skipped while recovering leftovers
        self._segments: dict[int, Segment] = {}
        self._current: int | None = None
        self._next_id = 0

    def append(self, value: bytes) -> int:
        """Write one event; returns the segment id to pass to `done` once the event is safe.
        Raises OSError (naming the file) when it cannot be written; nothing of it is kept then."""
        segment_id = self._current
        if segment_id is None or self._segments[segment_id].written >= self.segment_events:
            segment_id = self._open_segment()
        segment = self._segments[segment_id]
        line = value + b"\n"
        if segment.torn:
            line = b"\n" + line
        try:
            write_all(segment.fd, line, segment.path, segment.size)  # type: ignore[arg-type]
        except OSError:
            segment.torn = True  # until the file itself says the cut worked
            segment.size, segment.torn = tail_state(segment.fd)  # type: ignore[arg-type]
            raise
        segment.size += len(line)
        segment.torn = False
        segment.written += 1
        return segment_id

    def done(self, segment_id: int, count: int = 1) -> None:
        """`count` events of the segment reached Kafka or the spool: they need the journal no more."""
        segment = self._segments.get(segment_id)
        if segment is None:
            return
        segment.done += count
        self._forget_if_finished(segment_id)

    @property
    def outstanding(self) -> int:
        return sum(s.written - s.done for s in self._segments.values())

    def read_leftovers(self) -> list[bytes]:
        """Every complete line of the segments a previous process left; torn fragments are
        skipped and counted in `torn_lines`."""
        values: list[bytes] = []
        for path in self.leftovers:
            records, torn = recover_lines(path.read_bytes())
            values.extend(records)
            if torn:
                self.torn_lines += torn
                log.warning("journal_torn_lines_skipped", file=str(path), torn=torn, recovered=len(records))
        return values

    def drop_leftovers(self) -> None:
        """The leftovers are in the spool now."""
        for path in self.leftovers:
            path.unlink(missing_ok=True)
        self.leftovers = []

    def close(self) -> None:
        """Seal the current segment; finished segments are deleted, unfinished ones stay for the
        next start-up to recover."""
        if self._current is not None:
            self._seal(self._current)

    def _open_segment(self) -> int:
        if self._current is not None:
            self._seal(self._current)
        segment_id = self._next_id
        path = self.directory / f"{PREFIX}{time.time_ns()}-{segment_id}{SUFFIX}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        self._next_id += 1
        self._segments[segment_id] = Segment(path, fd)
        self._current = segment_id
        return segment_id

    def _seal(self, segment_id: int) -> None:
        segment = self._segments[segment_id]
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        if self._current == segment_id:
            self._current = None
        self._forget_if_finished(segment_id)

    def _forget_if_finished(self, segment_id: int) -> None:
        segment = self._segments[segment_id]
        if segment.sealed and segment.done >= segment.written:
            segment.path.unlink(missing_ok=True)
            del self._segments[segment_id]
