"""The upstream HTTP/1.1 client against a hostile upstream: a real local TCP server writes exact
bytes; each call must end with the exact error, quickly, and good answers must still parse."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from services.proxy.transport.http1 import Limits, Pool, UpstreamConnectionError, UpstreamTimeout

BOUND_S = 5.0  # a guard: a call that waits forever fails the test instead of freezing it
# ...and one for a call that spins inside data_received, where no asyncio timeout can run.
pytestmark = pytest.mark.timeout(15)
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SMALL = Limits(body_bytes=1024, stream_bytes=4096, event_bytes=512, stream_s=None)

Answer = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Upstream:
    """A local server answering successive requests with `answers` in turn (the last one again
    and again): bytes are written as they are, a function is given the writer."""

    answers: list[Answer]
    origin: str = ""
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        while not reader.at_eof():
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break  # the client closed its connection: the normal end of a keep-alive one
            length = re.search(rb"Content-Length: (\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if callable(answer):
                await answer(writer)
            else:
                writer.write(answer)
            await writer.drain()
        writer.close()


@asynccontextmanager
async def upstream(*answers: Answer, limits: Limits = Limits()) -> AsyncIterator[tuple[Upstream, Pool]]:
    fake = Upstream(list(answers))
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pool = Pool(fake.origin, limit=4, limits=limits)
    try:
        yield fake, pool
    finally:
        await pool.close()
        server.close()
        for writer in fake.writers:
            writer.close()


async def call(pool: Pool, deadline_s: float | None = 3.0) -> bytes:
    """One plain call: post, then read the whole answer."""
    deadline = pool.deadline(deadline_s) if deadline_s is not None else None
    response = await pool.post("/v1/chat/completions", b"{}", b"", deadline)
    try:
        return await response.read()
    finally:
        response.release()


async def stream(pool: Pool) -> list[bytes]:
    """One streamed call (no deadline, as streaming.py posts it): every piece of the answer."""
    response = await pool.post("/v1/chat/completions", b"{}", b"")
    try:
        return [piece async for piece in response.iter_chunks()]
    finally:
        response.release()


async def refused(answer: Answer, message: str, *, limits: Limits = Limits(), streamed: bool = False,
                  error: type[Exception] = UpstreamConnectionError) -> float:
    """`answer` ends the call with `error` matching `message`; returns how long the call took."""
    loop = asyncio.get_running_loop()
    async with upstream(answer, limits=limits) as (_fake, pool):
        started = loop.time()
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(error, match=message):
                await (stream(pool) if streamed else call(pool))
        return loop.time() - started


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- chunk framing ----------------------------------------------------------------------------

@pytest.mark.parametrize("streamed", [False, True])
async def test_a_negative_chunk_size_is_refused_at_once(streamed):
    """`-6` as a chunk size (int("-6", 16) == -6) ends the call with an error, without looping."""
    took = await refused(CHUNKED + b"-6\r\nhello!\r\n0\r\n\r\n", "malformed upstream answer: Invalid character in chunk size$", streamed=streamed)
    assert took < 1.0


@pytest.mark.parametrize(("size", "message"), [
    *((size, "Invalid character in chunk size") for size in (b"zz", b"0x5", b"1_0", b"+5", b" 5", b"5 ", b"5\x00")),
    (b"5;", "Invalid character in chunk extensions"),
    (b'5;a="x', "Invalid character in chunk extensions quoted value"),
])
async def test_a_chunk_size_that_is_not_hex_digits_is_refused(size, message):
    """Only hex digits, then optional `;name[=value]` extensions (no whitespace first), make a chunk-size line."""
    await refused(CHUNKED + size + b"\r\nhello\r\n0\r\n\r\n", f"malformed upstream answer: {message}$")


async def test_a_chunk_size_over_64_bits_is_refused_before_its_data_arrives():
    """A chunk size that overflows 64 bits ends the call when its size line arrives."""
    took = await refused(CHUNKED + b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n", "malformed upstream answer: Chunk size overflow$")
    assert took < 1.0


async def test_a_chunk_larger_than_the_cap_is_refused_as_it_arrives():
    """A 4 GiB chunk is read only up to the cap: its first bytes past it end the call."""
    await refused(CHUNKED + b"FFFFFFFF\r\n" + b"a" * 5000, "upstream answer larger than 1 KiB$", limits=SMALL)


async def test_a_chunk_size_line_without_end_is_refused():
    """Zeros without end (a valid-looking number) stop at MAX_FRAMING_RUN bytes."""
    await refused(CHUNKED + b"0" * 30_000, "upstream sent over 20 KiB of chunk framing without data$")


async def test_endless_chunk_extensions_are_refused():
    """A chunk-size line whose extensions never end stops at MAX_FRAMING_RUN bytes, whatever the pieces."""
    async def extensions(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + b"5")
        for _ in range(100):
            writer.write(b";name=value" * 100)
            await writer.drain()

    await refused(extensions, "upstream sent over 20 KiB of chunk framing without data$")


async def test_chunk_data_not_followed_by_crlf_is_refused():
    """The byte after the declared chunk data must be CRLF: a longer chunk is not a shorter one."""
    await refused(CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n", "malformed upstream answer: Expected LF after chunk data$")


async def test_a_bare_lf_in_chunk_framing_is_refused():
    """CRLF is required in chunk framing."""
    await refused(CHUNKED + b"5\nhello\r\n0\r\n\r\n", "malformed upstream answer: Missing expected CR after chunk size$")


async def test_a_connection_closed_mid_chunk_is_an_error():
    """An answer cut off inside a chunk is an error, never a short body."""
    async def half_then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED + b"10\r\nhalf")
        await writer.drain()
        writer.close()

    await refused(half_then_close, "upstream closed the connection before the end of its answer")


async def test_trailers_over_their_cap_are_refused():
    """Trailers are read and discarded, at most MAX_TRAILER_BYTES of them."""
    await refused(CHUNKED + chunk(b"ok") + b"0\r\n" + b"X-T: " + b"a" * 20_000 + b"\r\n\r\n", "upstream trailers over 16 KiB")


# -- lengths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths", [(b"2", b"3"), (b"2", b"2")])
async def test_two_content_lengths_are_refused(lengths):
    """Content-Length given twice, differing or not, is refused (llhttp does the same)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\nContent-Length: %s\r\n\r\nok" % lengths
    await refused(head, "malformed upstream answer: Duplicate Content-Length$")


@pytest.mark.parametrize(("value", "message"), [
    *((value, "malformed upstream answer: Invalid character in Content-Length") for value in (b"-1", b"+2", b"1_0", b"2, 2", b"0x2", b"\xb2")),
    (b"9" * 30, "malformed upstream answer: Content-Length overflow"),
    (b"1" * 19, "upstream answer larger than 32 MiB"),
])
async def test_a_content_length_that_is_not_digits_is_refused(value, message):
    """Content-Length is 1*DIGIT: no sign, no separator, no list, no superscript digit, no overflow."""
    await refused(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nok", f"{message}$")


async def test_content_length_with_transfer_encoding_is_refused():
    """Both framings at once is the request-smuggling shape: refused (RFC 9112 §6.3 allows it)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
    await refused(head + chunk(b"ok") + b"0\r\n\r\n", "malformed upstream answer: Transfer-Encoding can't be present with Content-Length$")


@pytest.mark.parametrize("coding", [b"gzip", b"chunked, chunked", b"xchunked"])
async def test_a_transfer_coding_other_than_chunked_is_refused(coding):
    """Only `chunked` is a transfer coding the client decodes."""
    await refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n", "unsupported Transfer-Encoding")


# -- heads ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "message"), [
    (b"HTTP/1.2 200 OK", "malformed upstream answer: Invalid HTTP version"),
    (b"HTTP/1.1 20 OK", "malformed upstream answer: Invalid status code"),
    (b"HTTP/1.1 OK", "malformed upstream answer: Invalid status code"),
    (b"HTTP/1.1  200 OK", "malformed upstream answer: Invalid status code"),
    (b"HTTP/2 200 OK", re.escape("not an HTTP/1.x answer: b'HTTP/2 '")),
    (b"HTTP/0.9 200 OK", re.escape("not an HTTP/1.x answer: b'HTTP/0.'")),
    (b"RTSP/1.0 200 OK", re.escape("not an HTTP/1.x answer: b'RTSP/1.'")),
    (b"ICY 200 OK", re.escape("not an HTTP/1.x answer: b'ICY 200'")),
    (b"SSH-2.0-OpenSSH_9.6", re.escape("not an HTTP/1.x answer: b'SSH-2.0'")),
])
async def test_an_invalid_status_line_is_refused(line, message):
    """The status line is `HTTP/1.x NNN [reason]` and nothing else."""
    await refused(line + b"\r\nContent-Length: 2\r\n\r\nok", f"{message}$")


async def test_a_status_line_in_one_byte_pieces_is_checked_all_the_same():
    """The protocol name is checked however the first bytes are cut."""
    await refused(lambda w: trickle(w, b"RTSP/1.0 200 OK\r\n\r\n"), re.escape("not an HTTP/1.x answer: b'R'"))


@pytest.mark.parametrize("code", [b"600", b"099"])
async def test_a_status_code_outside_100_to_599_is_refused(code):
    """Three digits are not enough: codes run from 100 to 599."""
    await refused(b"HTTP/1.1 " + code + b" Nope\r\nContent-Length: 2\r\n\r\nok", f"bad upstream status code {int(code)}$")


@pytest.mark.parametrize(("line", "message"), [
    (b"Content-Length 2", "Invalid header field char"),
    (b"X-A: 1\r\n folded", "Unexpected whitespace after header value"),  # obs-fold
    (b"X A: 1", "Invalid header token"),
    (b"X-A : 1", "Invalid header token"),
    (b"X-A: \x7f", "Invalid header value char"),
    (b"X-A: a\x00b", "Invalid header value char"),
    (b"X-A: a\rb", "Missing expected LF after header value"),  # a bare CR
])
async def test_a_malformed_header_line_is_refused(line, message):
    """A header line is `token:value` on one line: no colon-less line, no obs-fold, no CTLs."""
    await refused(b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 2\r\n\r\nok", f"malformed upstream answer: {message}$")


async def test_a_bare_lf_head_is_refused():
    """llhttp takes no bare LF as a line end (RFC 9112 §2.2 allows either; no LLM server sends one)."""
    await refused(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "malformed upstream answer: Missing expected CR after response line$")


@pytest.mark.parametrize("split", [False, True])
async def test_headers_over_the_cap_are_refused(split):
    """A head over 64 KiB ends the call, whether it comes in one write or in pieces."""
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok"

    async def in_pieces(writer: asyncio.StreamWriter) -> None:
        for i in range(0, len(head), 4000):
            writer.write(head[i:i + 4000])
            await writer.drain()

    await refused(in_pieces if split else head, "upstream response headers over 64 KiB")


async def test_an_unrequested_protocol_switch_is_refused():
    """101 Switching Protocols was never asked for."""
    await refused(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "switched protocols")


# -- sizes ------------------------------------------------------------------------------------

async def test_a_declared_body_over_the_cap_ends_the_call_before_it_arrives():
    """Content-Length over TALLY_MAX_UPSTREAM_RESPONSE_MB: refused on the head, no waiting for a body."""
    took = await refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", re.escape("upstream answer larger than 32 MiB"))
    assert took < 1.0


async def test_a_chunked_body_over_the_cap_is_refused():
    """Chunks adding up past the cap end the call."""
    await refused(CHUNKED + chunk(b"a" * 1000) + chunk(b"a" * 1000), "upstream answer larger than 1 KiB", limits=SMALL)


async def test_a_body_to_the_end_of_the_connection_over_the_cap_is_refused():
    """An answer framed by the connection's end is bounded too."""
    await refused(b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 5000, "upstream answer larger than 1 KiB", limits=SMALL)


async def test_a_gzip_bomb_is_refused_after_the_cap_not_inflated_whole():
    """A small gzip body inflating past the cap ends the call (zlib's output is bounded)."""
    bomb = gzip.compress(b"\0" * (8 * 1048576))
    assert len(bomb) < 1048576
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    await refused(head + bomb, "decoded upstream answer larger than 1 MiB", limits=Limits(body_bytes=1048576))


async def test_a_gzip_bomb_in_a_stream_is_refused_by_the_event_cap():
    """A compressed event stream is inflated step by step: one endless event stops at the event cap."""
    bomb = gzip.compress(b"data: " + b"a" * (8 * 1048576))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    await refused(head + chunk(bomb) + b"0\r\n\r\n", "upstream server-sent event larger than 1 MiB without an end",
                  limits=Limits(event_bytes=1048576), streamed=True)


async def test_a_server_sent_event_over_the_event_cap_is_refused():
    """Bytes without a blank line (what the relay must buffer) stop at TALLY_MAX_UPSTREAM_EVENT_MB."""
    await refused(SSE + chunk(b"data: {}\n\n") + chunk(b"data: " + b"x" * 600), "upstream server-sent event larger than 512 bytes without an end",
                  limits=SMALL, streamed=True)


async def test_a_stream_over_the_stream_cap_is_refused():
    """Well-formed events adding up past TALLY_MAX_UPSTREAM_STREAM_MB end the stream."""
    events = b"".join(chunk(b"data: " + b"x" * 200 + b"\n\n") for _ in range(30))
    await refused(SSE + events, "upstream answer larger than 4 KiB", limits=SMALL, streamed=True)


async def test_an_event_stream_read_whole_is_bounded_like_a_plain_answer():
    """A plain call answered with an event stream is held to the plain cap, not the stream cap."""
    events = b"".join(chunk(b"data: " + b"x" * 200 + b"\n\n") for _ in range(10))
    await refused(SSE + events + b"0\r\n\r\n", "upstream answer larger than 1 KiB", limits=SMALL)


# -- time -------------------------------------------------------------------------------------

async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        await asyncio.sleep(0.02)  # the hostile upstream's pace, not a wait in the test


async def test_a_trickled_body_cannot_outlive_the_deadline():
    """A byte every 20 ms keeps data flowing, yet a plain call ends at its deadline."""
    loop = asyncio.get_running_loop()
    body = b"x" * 1000
    async with upstream(lambda w: trickle(w, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body)) as (_fake, pool):
        started = loop.time()
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(UpstreamTimeout, match="the upstream did not answer within the timeout"):
                await call(pool, deadline_s=0.5)
        assert 0.5 <= loop.time() - started < 1.5


async def test_a_trickled_head_cannot_outlive_the_deadline():
    """The deadline holds while the head itself trickles in."""
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    async with upstream(lambda w: trickle(w, head)) as (_fake, pool):
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(UpstreamTimeout):
                await call(pool, deadline_s=0.3)


async def test_a_stream_cannot_outlive_the_stream_duration_cap():
    """Events that never stop end at TALLY_MAX_STREAM_S, however steadily they come."""
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE)
        while not writer.is_closing():
            writer.write(chunk(b"data: {}\n\n"))
            await writer.drain()
            await asyncio.sleep(0.02)

    took = await refused(endless, re.escape("the upstream answer went on past 0.4 s (TALLY_MAX_STREAM_S)"),
                         limits=Limits(stream_s=0.4), streamed=True, error=UpstreamTimeout)
    assert 0.4 <= took < 1.5


# -- what still works -------------------------------------------------------------------------

async def answer_in_pieces(writer: asyncio.StreamWriter, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        writer.write(data[i:i + step])
        await writer.drain()
        await asyncio.sleep(0)


@pytest.mark.parametrize("step", [1, 3, 1000])
async def test_chunk_extensions_and_trailers_parse_and_the_connection_is_reused(step):
    """Extensions (tokens and quoted strings) are ignored, trailers discarded, and the connection
    serves the next call: one TCP connection for both."""
    body = (b'5;name=value;q="a \\"b\\";c"\r\n{"a":\r\n' + b"3;x\r\n 1}\r\n" + b"0;last\r\n"
            + b"X-Checksum: abc\r\nX-Other: 1\r\n\r\n")
    async with upstream(lambda w: answer_in_pieces(w, CHUNKED + body, step), OK) as (fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert await call(pool) == b'{"a": 1}'
            assert await call(pool) == b"ok"
        assert (fake.connections, pool._open, len(pool._idle)) == (1, 1, 1)


async def test_an_event_stream_with_events_split_anywhere_is_relayed_whole():
    """Blank lines split across pieces still end events: no false event-cap refusal."""
    events = b"".join(b"data: " + b"%03d" % i + b"x" * 100 + b"\r\n\r\n" for i in range(20))
    answer = SSE + b"".join(chunk(events[i:i + 7]) for i in range(0, len(events), 7)) + b"0\r\n\r\n"
    async with upstream(answer, OK, limits=Limits(event_bytes=128)) as (fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert b"".join(await stream(pool)) == events
            assert await call(pool) == b"ok"
        assert fake.connections == 1


async def test_interim_answers_are_skipped():
    """A 103 Early Hints before the answer is read and dropped; the answer is the 200 after it."""
    async with upstream(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as (_fake, pool):
        async with asyncio.timeout(BOUND_S):
            response = await pool.post("/", b"{}", b"", pool.deadline(3))
            assert (response.status, response.headers, await response.read()) == (200, {"content-length": "2"}, b"ok")


async def test_a_gzip_answer_under_the_cap_is_decoded():
    """Compression the upstream chose anyway is undone, within the cap."""
    data = gzip.compress(b'{"a": 1}')
    async with upstream(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)) as (_fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert await call(pool) == b'{"a": 1}'


async def test_bytes_after_the_end_of_an_answer_keep_the_connection_out_of_the_pool():
    """Whatever follows an answer on its connection is not taken as the next call's answer."""
    async with upstream(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh") as (fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert await call(pool) == b"ok"
            assert await call(pool) == b"fresh"
        assert fake.connections == 2


async def test_connection_close_keeps_the_connection_out_of_the_pool():
    """An answer saying `Connection: close` (or HTTP/1.0) is not followed by another on its connection."""
    async with upstream(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", OK) as (fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert [await call(pool) for _ in range(3)] == [b"ok", b"ok", b"ok"]
        assert fake.connections == 3



async def test_an_empty_compressed_answer_is_empty():
    """A Content-Encoding on an empty body (an error answer, say) reads as empty, not as cut short."""
    async with upstream(b"HTTP/1.1 429 Too Many Requests\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n") as (_fake, pool):
        async with asyncio.timeout(BOUND_S):
            assert await call(pool) == b""


async def test_a_truncated_compressed_answer_is_an_error():
    """A gzip body that stops before its end is an error, not a silently short answer."""
    data = gzip.compress(b'{"a": 1}' * 100)[:-12]
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(data)
    await refused(head + data, "compressed upstream answer cut short$")


# -- configuration ----------------------------------------------------------------------------

def test_limits_come_from_the_environment():
    """The four settings reach the pools' Limits in bytes and seconds; TALLY_MAX_STREAM_S=0 lifts the bound."""
    from services.proxy.settings import upstream_limits_from_env

    assert upstream_limits_from_env({}) == Limits(body_bytes=32 * 1048576, stream_bytes=256 * 1048576, event_bytes=4 * 1048576, stream_s=3600.0)
    env = {"TALLY_MAX_UPSTREAM_RESPONSE_MB": "0.5", "TALLY_MAX_UPSTREAM_STREAM_MB": "64", "TALLY_MAX_UPSTREAM_EVENT_MB": "1",
           "TALLY_MAX_STREAM_S": "0"}
    assert upstream_limits_from_env(env) == Limits(body_bytes=524288, stream_bytes=64 * 1048576, event_bytes=1048576, stream_s=None)
    with pytest.raises(ValueError, match="TALLY_MAX_UPSTREAM_EVENT_MB must be above 0, got -1"):
        upstream_limits_from_env({"TALLY_MAX_UPSTREAM_EVENT_MB": "-1"})
