"""The parent's dispatcher hands connections to ready workers strictly in turn, holds them while no
worker is ready, and skips a worker that exited. Real sockets; the workers are the other ends of
their channels, read here."""

from __future__ import annotations

import socket

import pytest

from services.proxy.transport.handoff import CONNECTION, READY, Dispatcher, channel_pair, listener
from tests.fixtures.polling import eventually


@pytest.fixture
def dispatcher():
    d = Dispatcher(listener("127.0.0.1", 0))
    d.start()
    yield d
    d.stop()


def connect(d: Dispatcher, n: int) -> list[socket.socket]:
    port = d.listening.getsockname()[1]
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]


def worker(d: Dispatcher, number: int, ready: bool = True) -> socket.socket:
    ours, theirs = channel_pair()
    d.add(number, ours)
    if ready:
        theirs.send(READY)
    theirs.settimeout(5)
    return theirs


def received(channel: socket.socket, count: int) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        message, fds, _flags, _addr = socket.recv_fds(channel, 16, 4)
        assert (message, len(fds)) == (CONNECTION, 1)
        conns.append(socket.socket(fileno=fds[0]))
    return conns


def nothing_waiting(channel: socket.socket) -> bool:
    channel.setblocking(False)
    try:
        channel.recv(16, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        channel.settimeout(5)
    return False


def test_connections_go_to_the_ready_workers_in_turn(dispatcher):
    """32 connections to two ready workers: 16 each, every one the server side of a client's connection."""
    a, b = worker(dispatcher, 0), worker(dispatcher, 1)
    eventually(lambda: len(dispatcher.rotation) == 2, 5, "both workers in the rotation", 0.01)
    clients = connect(dispatcher, 32)
    to_a, to_b = received(a, 16), received(b, 16)
    assert nothing_waiting(a) and nothing_waiting(b)
    # Each handed descriptor is the server side of one client's connection.
    assert sorted(c.getpeername() for c in to_a + to_b) == sorted(c.getsockname() for c in clients)
    for c in clients + to_a + to_b:
        c.close()


def test_connections_wait_for_a_ready_worker(dispatcher):
    """Connections made while no worker is ready are held, then all handed over once one is."""
    starting = worker(dispatcher, 0, ready=False)
    clients = connect(dispatcher, 3)
    eventually(lambda: len(dispatcher.held) == 3, 5, "three connections held", 0.01)
    assert nothing_waiting(starting)
    starting.send(READY)
    handed = received(starting, 3)
    assert sorted(c.getpeername() for c in handed) == sorted(c.getsockname() for c in clients)
    for c in clients + handed:
        c.close()


def test_a_worker_that_exited_gets_nothing_more(dispatcher):
    """A worker whose channel closed leaves the rotation; its successor on a new channel joins it."""
    a, b = worker(dispatcher, 0), worker(dispatcher, 1)
    eventually(lambda: len(dispatcher.rotation) == 2, 5, "both workers in the rotation", 0.01)
    b.close()  # the worker exited
    eventually(lambda: dispatcher.rotation == [0], 5, "the exited worker out of the rotation", 0.01)
    clients = connect(dispatcher, 4)
    handed = received(a, 4)
    assert len(handed) == 4
    restarted = worker(dispatcher, 1)  # its successor, on a new channel
    eventually(lambda: sorted(dispatcher.rotation) == [0, 1], 5, "the successor in the rotation", 0.01)
    more = connect(dispatcher, 4)
    assert len(received(a, 2) + received(restarted, 2)) == 4
    for c in clients + handed + more:
        c.close()


def test_a_late_event_of_a_replaced_channel_leaves_the_successor_alone():
    """The closed old channel's late event, in the same select as its successor's, does not drop the successor."""
    # Driven by hand (no thread), so both events come in the order a single select can give them.
    d = Dispatcher(listener("127.0.0.1", 0))
    old_ours, old_theirs = channel_pair()
    new_ours, new_theirs = channel_pair()
    d.add(0, old_ours)
    d._take_added()
    old_theirs.close()  # the worker exited...
    d.add(0, new_ours)  # ...and its successor's channel is taken first
    d._take_added()
    new_theirs.send(READY)
    d._from_worker(0, new_ours)
    d._from_worker(0, old_ours)  # the late event of the closed channel
    assert (d.channels[0], d.rotation) == (new_ours, [0])
    for s in (new_ours, new_theirs, d.listening, d._wake_r, d._wake_w):
        s.close()
