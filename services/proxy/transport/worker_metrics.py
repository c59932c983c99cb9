"""/metrics with several workers: whichever worker a scrape reaches answers with every worker's
series, labelled `worker="<n>"` (sum them without the label for the proxy's totals). Each worker
writes its samples to a file in a directory the workers share, every `interval_s`, and reads the
others' files when scraped: the others' figures are at most that old. A restarted worker's
counters start again from 0, which Prometheus reads as a counter reset."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import structlog

from shared.metrics import Registry, Sample

log = structlog.get_logger(__name__)


class WorkerMetrics:
    def __init__(self, registry: Registry, directory: Path, worker: int, workers: int, interval_s: float = 1.0) -> None:
        self.registry = registry
        self.directory = directory
        self.worker = worker
        self.workers = workers
        self.interval_s = interval_s
        self.path = directory / f"worker-{worker}.json"
        registry.own_labels = (("worker", str(worker)),)
        registry.peer_samples = self.peer_samples

    def write(self) -> None:
        """This worker's samples, replaced atomically (a reader never sees half a file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(self.registry.samples()))
        os.replace(partial, self.path)

    def peer_samples(self) -> list[Sample]:
        samples: list[Sample] = []
        for other in range(self.workers):  # not the files of workers that no longer exist
            path = self.directory / f"worker-{other}.json"
            if other == self.worker:
                continue
            try:
                rows = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # gone or being replaced: its figures come with the next scrape
            samples.extend((name, help, kind, tuple(tuple(pair) for pair in labels), value)
                           for name, help, kind, labels, value in rows)
        return samples

    async def run(self) -> None:
        while True:
            try:
                self.write()
            except OSError as exc:
                log.warning("worker_metrics_not_written", path=str(self.path), error=str(exc))
            await asyncio.sleep(self.interval_s)  # the period of the snapshot
