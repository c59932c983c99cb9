"""What parsing one upstream answer costs: the proxy's parser (services/proxy/transport/http1_parser.py, on
httptools/llhttp) against a strict hand-written one in pure Python (bench/http1_handwritten.py).

Three answers, each parsed by a fresh parser as a call does: a ~600-byte chat completion with the
head an OpenAI-like API sends (about 20 headers) and with a minimal head (uvicorn/vLLM), fed in
one piece; and a 40-event SSE stream, fed one HTTP chunk at a time as a provider writes them.
Both parsers do the same work: a lower-cased header dict, the body pieces queued, body bytes
counted against a cap. A table of hostile inputs shows which parser refuses what, and why.

    .venv/bin/python bench/bench_http1_parser.py [--seconds 2]

Prints the figures and writes bench/results/http1_parser.json. One core, a few seconds."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httptools

from bench import http1_handwritten
from services.proxy.transport.http1_parser import Parser, UpstreamConnectionError

RESULTS = Path(__file__).with_name("results") / "http1_parser.json"
LIMIT = 32 * 1048576

BODY = (b'{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012","object":"chat.completion","created":1760000000,'
        b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":'
        b'"This is a fake answer from Tally\'s demo upstream, long enough to look like a short real one '
        b'with a sentence or two of text in it.","refusal":null,"annotations":[]},"logprobs":null,'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":80,"total_tokens":100,'
        b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":'
        b'{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
        b'"service_tier":"default","system_fingerprint":"fp_0123456789"}')
OPENAI_HEAD = b"\r\n".join([
    b"HTTP/1.1 200 OK", b"Date: Thu, 03 Dec 2026 08:00:00 GMT", b"Content-Type: application/json",
    b"Content-Length: %d" % len(BODY), b"Connection: keep-alive", b"access-control-expose-headers: X-Request-ID",
    b"openai-organization: user-abcdefghijklmnop", b"openai-processing-ms: 412", b"openai-version: 2020-10-01",
    b"x-ratelimit-limit-requests: 10000", b"x-ratelimit-limit-tokens: 200000", b"x-ratelimit-remaining-requests: 9999",
    b"x-ratelimit-remaining-tokens: 199980", b"x-ratelimit-reset-requests: 6ms", b"x-ratelimit-reset-tokens: 6ms",
    b"x-request-id: req_0123456789abcdef0123456789abcdef", b"strict-transport-security: max-age=31536000; includeSubDomains; preload",
    b"cf-cache-status: DYNAMIC", b"X-Content-Type-Options: nosniff", b"Server: cloudflare",
    b"CF-RAY: 8f0123456789abcd-AMS", b"alt-svc: h3=\":443\"; ma=86400",
]) + b"\r\n\r\n"
MINIMAL_HEAD = (b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 08:00:00 GMT\r\nserver: uvicorn\r\n"
                b"content-length: %d\r\ncontent-type: application/json\r\n\r\n" % len(BODY))
EVENT = (b'data: {"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012","object":"chat.completion.chunk","created":1760000000,'
         b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}\n\n')
STREAM = [b"HTTP/1.1 200 OK\r\nDate: Thu, 03 Dec 2026 08:00:00 GMT\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
          b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nx-request-id: req_0123456789abcdef\r\n\r\n"] \
    + [b"%x\r\n%s\r\n" % (len(EVENT), EVENT)] * 39 + [b"e\r\ndata: [DONE]\n\n\r\n", b"0\r\n\r\n"]
WORKLOADS: dict[str, list[bytes]] = {
    "json_openai_head": [OPENAI_HEAD + BODY],
    "json_minimal_head": [MINIMAL_HEAD + BODY],
    "sse_40_chunks": STREAM,
}
HOSTILE: dict[str, bytes] = {
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\nhello!\r\n0\r\n\r\n",
    "chunk size 0x5": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk size over 2^64": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFFF\r\n",
    "30,000 zeros as a chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 30_000,
    "no CRLF after chunk data": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
    "bare LF in chunk framing": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "space after chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "Content-Length and Transfer-Encoding": b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "Content-Length +2": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    "header without colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
    "space before colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "status line HTTP/2": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status 20": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "status 099": b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nok",
    "Transfer-Encoding: chunked, chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "bare LF head (RFC 9112 2.2: may be accepted)": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
}


def proxy_parser() -> Parser:
    return Parser(LIMIT, LIMIT)


def handwritten_parser() -> http1_handwritten.Parser:
    return http1_handwritten.Parser(LIMIT, LIMIT)


def parse(make: Callable[[], Any], pieces: list[bytes]) -> Any:
    parser = make()
    for piece in pieces:
        parser.feed(piece)
    assert parser.done, "the answer was not parsed to its end"
    return parser


def us_per_answer(make: Callable[[], Any], pieces: list[bytes], seconds: float) -> float:
    """µs to parse one answer with a fresh parser, over about `seconds`."""
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            parse(make, pieces)
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / count * 1e6


def best_of(parsers: dict[str, Callable[[], Any]], pieces: list[bytes], seconds: float, rounds: int = 7) -> dict[str, float]:
    """Each parser's best round; the parsers take turns, so a neighbour's load on this shared
    machine weighs on both alike."""
    best = {name: float("inf") for name in parsers}
    for _ in range(rounds):
        for name, make in parsers.items():
            best[name] = min(best[name], us_per_answer(make, pieces, seconds / rounds))
    return best


def verdict(make: Callable[[], Any], raw: bytes) -> str:
    try:
        parser = make()
        parser.feed(raw)
    except UpstreamConnectionError as exc:
        return f"refused: {str(exc)[:60]}"
    return "complete" if parser.done else "accepted, waiting for more"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per parser per answer")
    args = ap.parse_args()
    parsers: dict[str, Callable[[], Any]] = {"handwritten": handwritten_parser, "httptools": proxy_parser}
    for pieces in WORKLOADS.values():  # both give the same answer before they are timed
        bodies = {name: b"".join(parse(make, pieces).body) for name, make in parsers.items()}
        assert len(set(bodies.values())) == 1, "the parsers disagree"
    by_work = {work: best_of(parsers, pieces, args.seconds) for work, pieces in WORKLOADS.items()}
    figures = {name: {work: round(by_work[work][name], 2) for work in WORKLOADS} for name in parsers}
    verdicts = {case: {name: verdict(make, raw) for name, make in parsers.items()} for case, raw in HOSTILE.items()}
    print(f"{'µs per answer':<22}" + "".join(f"{name:>13}" for name in parsers))
    for work in WORKLOADS:
        print(f"{work:<22}" + "".join(f"{figures[name][work]:>13.2f}" for name in parsers))
    print()
    for case, by_parser in verdicts.items():
        print(f"{case}:")
        for name, text in by_parser.items():
            print(f"    {name:<12} {text}")
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "httptools": httptools.__version__,
        "us_per_answer": figures,
        "hostile": verdicts,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
