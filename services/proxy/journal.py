"""The write-ahead journal of usage events: what makes an answered call survive a SIGKILL.

Every event is written to the journal (one write(2), no fsync) before its call is answered. A
process killed at any moment after that leaves the line in the kernel's page cache, so the file
holds it. Lines are grouped in segments; a segment is deleted once it is sealed and every event in
it was acknowledged by Kafka or moved to the fsync'd spool. On start-up, segments a previous
process left behind go to the spool, which sends them: an event Kafka had already acknowledged is
sent twice, and downstream keeps one (the request_id is the idempotency key).

What this does not cover is the machine itself losing power before the kernel wrote the page
cache out; the spool's fsync covers events that reach it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "journal-"
SUFFIX = ".jsonl"


@dataclass
class Segment:
    path: Path
    fd: int | None
    written: int = 0
    done: int = 0

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
        self._segments: dict[int, Segment] = {}
        self._current: int | None = None
        self._next_id = 0

    def append(self, value: bytes) -> int:
        """Write one event; returns the segment id to pass to `done` once the event is safe."""
        segment_id = self._current
        if segment_id is None or self._segments[segment_id].written >= self.segment_events:
            segment_id = self._open_segment()
        segment = self._segments[segment_id]
        line = value + b"\n"
        written = os.write(segment.fd, line)  # type: ignore[arg-type]
        if written < len(line):  # a short write (disk full, a signal): the rest after it
            view = memoryview(line)[written:]
            while view:
                view = view[os.write(segment.fd, view):]  # type: ignore[arg-type]
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
        """Every complete line of the segments a previous process left (a torn last line is skipped)."""
        values = []
        for path in self.leftovers:
            with open(path, "rb") as handle:
                values.extend(line.rstrip(b"\n") for line in handle if line.endswith(b"\n") and line.strip())
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
        self._next_id += 1
        path = self.directory / f"{PREFIX}{time.time_ns()}-{segment_id}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
