"""The upstream HTTP/1.1 client: framing by length, chunks or EOF, in any split; deadlines."""

import asyncio
import zlib

import pytest

from services.proxy.transport.http1 import Pool, UpstreamConnectionError, UpstreamTimeout, _Parser

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def parse(raw: bytes, step: int) -> _Parser:
    parser = _Parser()
    for i in range(0, len(raw), step):
        parser.feed(raw[i:i + step])
    return parser


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_content_length_body_in_any_split(step):
    """A Content-Length body is complete exactly when its last byte arrives, however it was cut."""
    parser = parse(HEAD + b"Content-Length: 11\r\n\r\n{\"a\": 1234}", step)
    assert (parser.status, parser.done, b"".join(parser.body)) == (200, True, b'{"a": 1234}')
    assert parser.headers["content-type"] == "application/json"


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_chunked_body_in_any_split(step):
    """Chunked bodies are decoded, extensions ignored, the zero chunk ends them."""
    raw = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\nA;ext=1\r\n {\"x\":1}\n\n\r\n0\r\n\r\n"
    parser = parse(raw, step)
    assert parser.done
    assert b"".join(parser.body) == b'data: {"x":1}\n\n'


def test_chunked_body_is_not_done_before_the_zero_chunk():
    """A stream stays open until the terminating chunk."""
    parser = parse(HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 1000)
    assert (parser.done, b"".join(parser.body)) == (False, b"abc")


def test_error_status_and_repeated_headers():
    """Any status is read; repeated headers are joined."""
    parser = parse(b"HTTP/1.1 429 Too Many Requests\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n", 1000)
    assert (parser.status, parser.headers["x-a"], parser.done) == (429, "1, 2", True)


def test_garbage_is_a_connection_error():
    """A non-HTTP answer is refused."""
    with pytest.raises(UpstreamConnectionError):
        parse(b"SSH-2.0-OpenSSH\r\n\r\n", 1000)


def test_gzip_bytes_are_kept_for_the_response_to_decode():
    """The parser frames compressed bytes; Response decodes them by Content-Encoding."""
    compressed = zlib.compress(b"hello")
    parser = parse(HEAD + b"Content-Encoding: deflate\r\nContent-Length: " + str(len(compressed)).encode() + b"\r\n\r\n" + compressed, 4)
    assert zlib.decompress(b"".join(parser.body)) == b"hello"


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _server(*answers: bytes) -> tuple[asyncio.AbstractServer, str]:
    """A keep-alive server giving `answers` to the requests (each with a 2-byte body) in turn,
    the last one again and again."""
    queue = list(answers)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            await reader.readexactly(2)
            writer.write(queue.pop(0) if len(queue) > 1 else queue[0])
            await writer.drain()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_deadline_passed_mid_answer_is_a_timeout_and_frees_the_slot():
    """An upstream that sends its headers and then stalls: read() raises UpstreamTimeout at the
    deadline, the connection is closed and its slot given back; the next call gets a fresh one."""
    server, origin = await _server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", OK)  # half a body, then nothing
    pool = Pool(origin, limit=1)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        response = await pool.post("/", b"{}", b"", deadline=started + 0.3)
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(response.read(), 5)  # without the deadline: a plain TimeoutError after 5 s
        assert 0.3 <= loop.time() - started < 2.0
        response.release()
        again = await pool.post("/", b"{}", b"", deadline=loop.time() + 5)  # limit=1: the slot came back
        assert await again.read() == b"ok"
    finally:
        await pool.close()
        server.close()


async def test_an_answer_in_time_leaves_no_timer_behind():
    """The deadline's timer goes with the answer: a kept-alive connection is not closed later."""
    server, origin = await _server(OK)
    pool = Pool(origin, limit=1)
    loop = asyncio.get_running_loop()
    try:
        response = await pool.post("/", b"{}", b"", deadline=loop.time() + 0.2)
        assert await response.read() == b"ok"
        conn = pool._idle[0]
        assert conn.timer is None and not conn.closed
    finally:
        await pool.close()
        server.close()


async def test_a_call_waiting_for_a_slot_times_out_and_takes_none():
    """All connections busy past the deadline: UpstreamTimeout; the waiter leaves no slot taken,
    and the slot freed later goes to the next caller."""
    server, origin = await _server(OK)
    pool = Pool(origin, limit=1)
    loop = asyncio.get_running_loop()
    try:
        busy = await pool.post("/", b"{}", b"", deadline=loop.time() + 5)
        with pytest.raises(UpstreamTimeout, match="came free"):
            await pool.post("/", b"{}", b"", deadline=loop.time() + 0.1)
        waiting = asyncio.ensure_future(pool.post("/", b"{}", b"", deadline=loop.time() + 5))
        await asyncio.sleep(0)  # let it queue for the slot
        assert not waiting.done()
        assert await busy.read() == b"ok"  # gives the slot back: straight to the waiting call
        assert await (await waiting).read() == b"ok"
        assert (pool._slots.free, len(pool._slots.waiters)) == (1, 0)
    finally:
        await pool.close()
        server.close()


async def test_slots_go_first_come_first_served_and_survive_cancellation():
    """A cancelled waiter is skipped; one cancelled just after being handed a slot passes it on."""
    from services.proxy.transport.http1 import _Slots

    slots = _Slots(1)
    assert slots.try_take() and not slots.try_take()
    first, second, third = (asyncio.ensure_future(slots.take()) for _ in range(3))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    slots.release()  # skips the cancelled first, hands the slot to the second
    second.cancel()  # ...which is cancelled before it runs: the slot moves on to the third
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert first.cancelled() and second.cancelled() and third.done() and not third.cancelled()
    slots.release()
    assert (slots.free, len(slots.waiters)) == (1, 0)
