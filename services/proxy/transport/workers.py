"""Several proxy processes on one port: Python runs one core per process, so a replica uses more
cores by running `TALLY_PROXY_WORKERS` processes. This parent listens on the port and hands each
connection to the next ready worker (handoff.py: why not SO_REUSEPORT).

It starts the workers, passes SIGTERM/SIGINT on, and restarts a worker that dies (a
SIGKILLed worker's journal is recovered by its successor, which owns the same directory). Each
worker is a full proxy: its own key table, budget share (replicas x workers processes share a
budget, docs/budgets.md), Kafka producer, journal and spool (settings.spool_path)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

from services.proxy.settings import WORKER_ENV, ProxySettings, worker_spool_path
from services.proxy.transport.handoff import HANDOFF_FD_ENV, Dispatcher, channel_pair, listener

log = structlog.get_logger(__name__)

RESTART_DELAY_S = 1.0  # between a worker's death and its restart, so a crash-looping worker idles
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: a SIGKILLed parent must not leave workers holding the port."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def adopt_orphans(root: Path, workers: int) -> int:
    """Move the journal segments and spool files of workers that no longer exist (the count was
    lowered) into worker 0's directory, which sends them. Returns how many files moved."""
    moved = 0
    for directory in sorted(root.glob("worker-*")):
        suffix = directory.name.removeprefix("worker-")
        if not suffix.isdigit() or int(suffix) < workers:
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith("journal-"):
                target = root / path.name
            elif path.name == "spool.jsonl" or path.name.endswith(".draining"):
                target = root / f"spool-worker{suffix}-{time.time_ns()}-{path.stem}.draining"
            else:
                continue
            shutil.move(path, target)
            moved += 1
        if not any(directory.iterdir()):
            directory.rmdir()
    if moved:
        log.warning("orphan_spool_adopted", files=moved, into=str(root))
    return moved


class WorkerParent:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.dispatcher: Dispatcher | None = None

    def spawn(self, worker: int) -> None:
        assert self.dispatcher is not None
        ours, theirs = channel_pair()
        env = {**os.environ, WORKER_ENV: str(worker), "TALLY_PROXY_WORKERS": str(self.settings.workers),
               HANDOFF_FD_ENV: str(theirs.fileno())}
        try:
            self.procs[worker] = subprocess.Popen([sys.executable, "-m", "services.proxy"], env=env, preexec_fn=_die_with_parent,
                                                  pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        self.dispatcher.add(worker, ours)
        log.info("proxy_worker_started", worker=worker, pid=self.procs[worker].pid,
                 spool=str(worker_spool_path(self.settings.spool_root, worker)))

    def stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.dispatcher is not None:
            self.dispatcher.stop()  # no new connections for workers that are finishing
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.dispatcher = Dispatcher(listener(self.settings.common.host, self.settings.port))
        self.dispatcher.start()
        try:
            for worker in range(self.settings.workers):
                self.spawn(worker)
            return self.wait_for_workers()
        finally:
            self.dispatcher.stop()

    def wait_for_workers(self) -> int:
        while self.running():
            pid, status = os.wait()
            worker = next((w for w, p in self.procs.items() if p.pid == pid), None)
            if worker is None:
                continue
            self.procs[worker].returncode = code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                continue
            if code == 2:  # a configuration error: every restart would fail the same way
                log.error("proxy_worker_misconfigured", worker=worker)
                self.stop(signal.SIGTERM, None)
                continue
            log.warning("proxy_worker_died", worker=worker, pid=pid, exit_code=code, restart_in_s=RESTART_DELAY_S)
            time.sleep(RESTART_DELAY_S)  # restart delay, not a wait for a condition
            self.spawn(worker)
        return 0 if all(proc.returncode == 0 for proc in self.procs.values()) else 1

    def running(self) -> bool:
        return any(proc.returncode is None for proc in self.procs.values())
