"""The upstream the proxy benchmark talks to: an OpenAI-compatible chat completions server on bare
asyncio protocols, answering every POST with the same completion the demo upstream gives
(20 prompt + 80 completion tokens; server-sent events when the body asks for a stream).

Why not stack/fake_upstream.py: that one is built on aiohttp and records every call for the
tests, so it spends more CPU per call than the proxy itself does. A real provider runs on its own
machines; on this shared 2-core box a heavy stand-in would measure the stand-in, not the proxy.
The benchmark drives this server directly and through the proxy in the same run.

    python -m bench.canned_upstream --port 4010"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import orjson

from bench.loadgen import content_length

CONTENT_WORDS = "This is a fake answer from Tally's demo upstream.".split(" ")
USAGE = {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}
CREATED = 1_760_000_000
_ids = itertools.count()


def plain_answer(model: str) -> bytes:
    body = orjson.dumps({
        "id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(CONTENT_WORDS)}, "finish_reason": "stop"}],
        "usage": USAGE,
    })
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def stream_answer(model: str, include_usage: bool) -> list[bytes]:
    """The response head, then one HTTP chunk per event, each its own write as a provider sends them."""
    call_id = f"chatcmpl-{next(_ids)}"
    events = []
    for i, word in enumerate(CONTENT_WORDS):
        delta = {"content": word + " "} if i else {"role": "assistant", "content": word + " "}
        events.append({"id": call_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({"id": call_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        events.append({"id": call_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                       "choices": [], "usage": USAGE})
    pieces = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head] + [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]


class CannedServer(asyncio.Protocol):
    """Keep-alive HTTP/1.1: reads a request head and its Content-Length body, writes the answer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = content_length(bytes(self.buffer[:end]), default=0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            for piece in answer(body):
                self.transport.write(piece)  # type: ignore[union-attr]


def answer(body: bytes) -> list[bytes]:
    request = orjson.loads(body) if body else {}
    model = request.get("model", "fake")
    if request.get("stream"):
        return stream_answer(model, bool((request.get("stream_options") or {}).get("include_usage")))
    return [plain_answer(model)]


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(CannedServer, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
