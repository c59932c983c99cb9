"""Connections handed to the workers in turn. With SO_REUSEPORT the kernel picks a worker by a hash
of each connection's addresses, and a client that opens its connection pool while one worker is
still starting puts every connection on the other: keep-alive connections stay where they landed,
so one worker can serve a whole pool while the other idles, at well under half the throughput
of a split pool. As Node's cluster module does, the parent accepts instead and passes each
connection (its file descriptor, over a Unix socket) to the next worker that is ready, round
robin; a worker restarting gets none until it says it is ready.

Parent side: `Dispatcher`, a thread beside the parent's wait loop. Worker side: `serve_handed_off`,
aiohttp's runner fed with the connections that arrive on the worker's channel."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import selectors
import socket
import threading
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

READY = b"r"  # worker -> parent, once it serves
CONNECTION = b"c"  # parent -> worker, with one file descriptor
HANDOFF_FD_ENV = "TALLY_PROXY_HANDOFF_FD"
MAX_HELD = 4096  # connections held while no worker is ready (start-up); past that the oldest is closed


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, worker end): SOCK_SEQPACKET keeps one message, one descriptor."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class Dispatcher:
    """Accepts on `listening` and passes each connection to the next ready worker."""

    def __init__(self, listening: socket.socket) -> None:
        self.listening = listening
        self.selector = selectors.DefaultSelector()
        self.rotation: list[int] = []  # ready workers, in turn
        self.channels: dict[int, socket.socket] = {}
        self.held: collections.deque[socket.socket] = collections.deque()
        self.turn = 0
        self._added: list[tuple[int, socket.socket]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        # The thread logs with the context bound so far (the service's name).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), name="proxy-dispatcher",
                                        daemon=True)

    def start(self) -> None:
        self.selector.register(self.listening, selectors.EVENT_READ)
        self.selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()

    def add(self, worker: int, channel: socket.socket) -> None:
        """A (re)started worker's channel; it gets connections once it has said it is ready."""
        channel.setblocking(False)
        with self._lock:
            self._added.append((worker, channel))
        self._wake_w.send(b"w")

    def stop(self) -> None:
        """Stop accepting (a connection not yet handed over is closed)."""
        self._stopping = True
        with suppress(OSError):
            self._wake_w.send(b"s")
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self.selector.select():
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    self._take_added()
                elif key.fileobj is self.listening:
                    self._accept()
                else:
                    self._from_worker(key.data, key.fileobj)  # type: ignore[arg-type]
        for conn in self.held:
            conn.close()
        self.listening.close()

    def _take_added(self) -> None:
        with self._lock:
            added, self._added = self._added, []
        for worker, channel in added:
            self._drop(worker)  # the channel of the worker it replaces, if any
            self.channels[worker] = channel
            self.selector.register(channel, selectors.EVENT_READ, worker)

    def _accept(self) -> None:
        self._hand_held()
        for _ in range(64):  # a burst, then the workers' messages get their turn
            try:
                conn, _addr = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the client retries
                log.warning("proxy_accept_failed", error=str(exc))
                return
            self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        busy = 0
        while self.rotation and busy < len(self.rotation):
            worker = self.rotation[self.turn % len(self.rotation)]
            self.turn += 1
            try:
                socket.send_fds(self.channels[worker], [CONNECTION], [conn.fileno()])
            except BlockingIOError:  # its channel is full (the worker is stuck): the next one
                busy += 1
                continue
            except OSError as exc:  # it exited
                log.info("proxy_worker_gone", worker=worker, error=str(exc))
                self._drop(worker)
                continue
            conn.close()  # the worker has its own descriptor now
            return
        if len(self.held) >= MAX_HELD:
            self.held.popleft().close()
        self.held.append(conn)

    def _hand_held(self) -> None:
        for _ in range(len(self.held)):
            if not self.rotation:
                return
            self._hand(self.held.popleft())

    def _from_worker(self, worker: int, channel: socket.socket) -> None:
        if self.channels.get(worker) is not channel:
            return  # an event of a channel already replaced by its successor's, in the same select
        try:
            message = channel.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message = b""
        if not message:  # the worker exited
            log.info("proxy_worker_gone", worker=worker)
            self._drop(worker)
            return
        if READY in message and worker not in self.rotation:
            self.rotation.append(worker)
            log.info("proxy_worker_ready", worker=worker, ready=len(self.rotation))
            self._hand_held()

    def _drop(self, worker: int) -> None:
        channel = self.channels.pop(worker, None)
        if worker in self.rotation:
            self.rotation.remove(worker)
        if channel is not None:
            with suppress(KeyError, ValueError):
                self.selector.unregister(channel)
            channel.close()


class Receiver:
    """Worker side: every descriptor that arrives becomes a connection of aiohttp's server."""

    def __init__(self, channel: socket.socket, server: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.server = server  # the protocol factory (web.Server)
        self.loop = loop
        self.parent_gone = asyncio.Event()
        self._connecting: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def start(self) -> None:
        self.channel.setblocking(False)
        self.loop.add_reader(self.channel.fileno(), self._readable)
        self.channel.send(READY)

    def stop(self) -> None:
        with suppress(ValueError, OSError):
            self.loop.remove_reader(self.channel.fileno())

    def _readable(self) -> None:
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(self.channel, 16, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:
                self.stop()
                self.parent_gone.set()
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                task = self.loop.create_task(self._connect(conn))
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.server, sock=conn)
        except OSError:  # the client went away in between
            conn.close()


def serve_handed_off(app: web.Application, channel: socket.socket, loop: asyncio.AbstractEventLoop,
                     shutdown_timeout: float) -> None:
    """aiohttp's run_app, with connections from the channel instead of a listening socket:
    SIGTERM/SIGINT finish the calls in flight (up to `shutdown_timeout`), as run_app does."""

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        receiver = Receiver(channel, runner.server, loop)
        receiver.start()
        try:
            await receiver.parent_gone.wait()  # normally ended by a signal (GracefulExit)
        finally:
            receiver.stop()
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
