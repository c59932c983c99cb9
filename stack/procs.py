"""Starting detached processes, recording their pids, and stopping exactly those."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stack.paths import LOGS, PIDS


class StackError(Exception):
    """One clear line: what went wrong and what to do."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def recorded_pid(name: str) -> int | None:
    path = PIDS / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start_detached(name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start `argv` in its own session with output to .run/logs/<name>.log; record its pid."""
    PIDS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    (PIDS / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the recorded process (and its group), SIGKILL it after `timeout`. True if one ran."""
    path = PIDS / f"{name}.pid"
    pid = recorded_pid(name)
    if pid is None:
        path.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not wait_until(lambda: not pid_alive(pid), timeout):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: not pid_alive(pid), 5)
    path.unlink(missing_ok=True)
    return True


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def run(argv: Sequence[str], what: str, *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command to completion; on failure raise a StackError naming `what` and the last output line."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=dict(env) if env else None, cwd=cwd)
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {argv[0]} is not installed") from exc
    if done.returncode != 0:
        lines = [l for l in (done.stderr + done.stdout).splitlines() if l.strip()]
        raise StackError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout
