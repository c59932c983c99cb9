"""A plain answer's ready-made head carries exactly what aiohttp's web.Response would have written."""

import asyncio

import pytest
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request

from services.proxy.transport.answer import JSON, Answer, header_lines

HEADERS = {"x-litellm-model-group": "gpt-4o-mini", "x-litellm-call-id": "0b1c", "x-litellm-response-cost": "0.0000074"}
BODY = b'{"id":"chatcmpl-1","object":"chat.completion"}'


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.writes = 0

    def write(self, data) -> None:
        self.data += data
        self.writes += 1

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False


class _Protocol:
    _paused = False

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


async def written(response: web.StreamResponse, version: HttpVersion, headers: dict[str, str], closing: bool) -> tuple[bytes, int]:
    transport = _Transport()
    writer = StreamWriter(_Protocol(transport), asyncio.get_running_loop())  # type: ignore[arg-type]
    request = make_mocked_request("POST", "/v1/chat/completions", headers=headers, version=version, closing=closing,
                                  writer=writer, transport=transport)
    # make_mocked_request closes every HTTP/1.0 connection; a keep-alive 1.0 client is kept open.
    request._message = request._message._replace(should_close=closing)
    await response.prepare(request)
    await response.write_eof()
    return bytes(transport.data), transport.writes


def parts(message: bytes) -> tuple[bytes, set[bytes], bytes]:
    """(status line, the header lines but Date, body): aiohttp orders the lines differently."""
    head, _, body = message.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    return status, {line for line in lines if not line.startswith(b"Date: ")}, body


@pytest.mark.parametrize(("version", "headers", "closing"), [
    (HttpVersion11, {}, False),
    (HttpVersion11, {"Connection": "close"}, True),
    (HttpVersion10, {}, True),
    (HttpVersion10, {"Connection": "keep-alive"}, False),
])
async def test_answer_writes_what_web_response_writes(version, headers, closing):
    """Status line, every header (Content-Length, Server, Connection included) and body are aiohttp's."""
    expected, _ = await written(web.Response(body=BODY, headers=HEADERS, content_type=JSON), version, headers, closing)
    got, writes = await written(Answer(header_lines({"Content-Type": JSON, **HEADERS}), BODY), version, headers, closing)
    assert parts(got) == parts(expected)
    assert writes == 1


async def test_answer_keeps_the_connection_as_the_client_asked():
    """keep_alive follows the request, as the server loop reads it after the answer."""
    answer = Answer(header_lines(HEADERS), BODY)
    await written(answer, HttpVersion11, {"Connection": "close"}, True)
    assert answer.keep_alive is False
    assert answer.body_length == len(BODY)


def test_header_lines_refuse_a_newline():
    """A value that would split the head is refused when the lines are prepared."""
    with pytest.raises(ValueError, match="newline"):
        header_lines({"x-litellm-model-group": "a\r\nSet-Cookie: x"})
