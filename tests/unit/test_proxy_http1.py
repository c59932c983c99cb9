"""The upstream HTTP/1.1 response parser: framing by length, chunks or EOF, in any split."""

import zlib

import pytest

from services.proxy.http1 import UpstreamConnectionError, _Parser

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
