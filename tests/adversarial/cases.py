"""Hypothesis strategies for hostile client requests (docs/adversarial.md): NUL in recorded
strings, metadata, tags and `user` far over any sane limit, unicode and lone surrogates, wrong
types, `stream` on embeddings, unknown models, bad JSON and deep nesting. Each case says what the
proxy must answer."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import strategies as st

from tests.adversarial.harness import EMBED_PRICE, chat_cost

CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
EMBED_PATHS = ("/embeddings", "/v1/embeddings")
MESSAGES = [{"role": "user", "content": "hello"}]
METADATA_FIELDS = ("metadata", "tags", "spend_logs_metadata")

# What the proxy must answer:
REFUSE = "refuse"  # 400 invalid_request_error naming the field, the upstream not called
OK = "ok"  # 200, recorded at `cost`
REJECT = "reject"  # a clean OpenAI-shaped 4xx
EITHER = "either"  # a 2xx that is recorded (at `cost` when given) or a clean OpenAI-shaped 4xx/5xx


@dataclass(frozen=True)
class Case:
    label: str
    path: str
    content: bytes
    expect: str
    fields: tuple[str, ...] = ()  # REFUSE: error.param names one of these
    cost: Decimal | None = None  # a 2xx must be logged at exactly this

    def __repr__(self) -> str:  # hypothesis prints failing cases: keep huge bodies out of the report
        shown = self.content if len(self.content) <= 300 else self.content[:300] + b"..."
        return f"Case({self.label!r}, {self.path}, {len(self.content)} bytes: {shown!r}, expect={self.expect})"


def chat_body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "hostile-ok", "messages": MESSAGES, **fields})


paths = st.sampled_from(CHAT_PATHS)
# Text Postgres and JSON accept: no NUL, no control characters, no lone surrogates.
clean_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)


@st.composite
def nul_in_recorded_string(draw: st.DrawFn) -> Case:
    """A NUL somewhere in a string the spend logs would record."""
    text = draw(clean_text)
    at = draw(st.integers(0, len(text)))
    poisoned = text[:at] + "\x00" + text[at:]
    where = draw(st.sampled_from(("user", "tag", "body tag", "spend_logs_metadata", "metadata value", "metadata key")))
    fields = {"user": {"user": poisoned},
              "tag": {"metadata": {"tags": ["fine", poisoned]}},
              "body tag": {"tags": [poisoned]},
              "spend_logs_metadata": {"metadata": {"spend_logs_metadata": {"note": poisoned}}},
              "metadata value": {"metadata": {"note": poisoned}},
              "metadata key": {"metadata": {poisoned: "x"}}}[where]
    names = ("user",) if where == "user" else METADATA_FIELDS
    return Case(f"NUL in {where}", draw(paths), chat_body(**fields), REFUSE, names)


@st.composite
def over_any_limit(draw: st.DrawFn) -> Case:
    """Metadata, tags or `user` far beyond what any sane edge limit allows."""
    what = draw(st.sampled_from(("metadata size", "tag count", "tag length", "user length")))
    if what == "metadata size":  # the example: quotes double in size when escaped again
        n = draw(st.integers(300_000, 2_000_000))
        return Case(f"metadata of {n} quotes", draw(paths), chat_body(metadata={"p": '"' * n}), REFUSE, METADATA_FIELDS)
    if what == "tag count":
        n = draw(st.integers(2_000, 80_000))
        return Case(f"{n} tags", draw(paths), chat_body(metadata={"tags": [f"t{i}" for i in range(n)]}), REFUSE, METADATA_FIELDS)
    if what == "tag length":
        n = draw(st.integers(5_000, 200_000))
        return Case(f"a tag of {n} chars", draw(paths), chat_body(metadata={"tags": ["x" * n]}), REFUSE, METADATA_FIELDS)
    n = draw(st.integers(5_000, 1_000_000))
    return Case(f"a user of {n} chars", draw(paths), chat_body(user="u" * n), REFUSE, ("user",))


@st.composite
def ordinary_unicode(draw: st.DrawFn) -> Case:
    """Small unicode `user`, tags and metadata: an ordinary call, answered and recorded exactly."""
    fields: dict[str, Any] = {"user": draw(clean_text),
                              "metadata": {"tags": draw(st.lists(clean_text, max_size=3, unique=True)),
                                           "spend_logs_metadata": {"note": draw(clean_text)}}}
    return Case("unicode identifiers", draw(paths), chat_body(**fields), OK, cost=chat_cost(10, 20))


@st.composite
def lone_surrogate(draw: st.DrawFn) -> Case:
    """A lone UTF-16 surrogate escape (valid JSON, not valid text for Postgres) in a recorded string."""
    escape = draw(st.sampled_from((b"\\ud800", b"\\udfff", b"\\udbff\\u0041")))
    where = draw(st.sampled_from((b'"user": "a%sb"', b'"metadata": {"tags": ["a%sb"]}', b'"metadata": {"k": "%s"}')))
    content = b'{"model": "hostile-ok", "messages": [{"role": "user", "content": "hi"}], ' + where % escape + b"}"
    return Case("lone surrogate", draw(paths), content, EITHER, cost=chat_cost(10, 20))


@st.composite
def wrong_types(draw: st.DrawFn) -> Case:
    """A field of the wrong JSON type."""
    field, value = draw(st.sampled_from((
        ("user", 1), ("user", []), ("user", {"id": "x"}), ("user", True), ("user", 1.5),
        ("metadata", []), ("metadata", "x"), ("metadata", 1), ("metadata", {"tags": "x"}), ("metadata", {"tags": {"a": 1}}),
        ("metadata", {"tags": [1, None]}), ("metadata", {"spend_logs_metadata": "x"}), ("messages", "hi"),
        ("messages", None), ("messages", [1]), ("model", 1), ("model", None), ("model", []), ("stream", "yes"),
        ("stream", 1), ("stream_options", "x"), ("stream_options", []), ("stream_options", {"include_usage": "yes"}),
        ("mock_response", 1), ("x_hostile", "x"),
    )))
    body: dict[str, Any] = {"model": "hostile-ok", "messages": MESSAGES, field: value}
    return Case(f"{field} = {value!r}", draw(paths), orjson.dumps(body), EITHER)


@st.composite
def stream_on_embeddings(draw: st.DrawFn) -> Case:
    """`stream: true` on embeddings, answered with plain JSON upstream: never a free call."""
    inputs = draw(st.lists(clean_text, min_size=1, max_size=4))
    body = {"model": "hostile-embed-ok", "input": inputs, "stream": True}
    return Case("stream on embeddings", draw(st.sampled_from(EMBED_PATHS)), orjson.dumps(body), EITHER,
                cost=8 * len(inputs) * EMBED_PRICE)


@st.composite
def unknown_model(draw: st.DrawFn) -> Case:
    name = draw(clean_text.filter(lambda s: not s.startswith("hostile-")))
    path = draw(st.sampled_from(CHAT_PATHS + EMBED_PATHS))
    return Case("unknown model", path, orjson.dumps({"model": name, "messages": MESSAGES, "input": "x"}), REJECT)


@st.composite
def bad_json(draw: st.DrawFn) -> Case:
    good = chat_body(user="someone")
    content = draw(st.one_of(
        st.integers(1, len(good) - 1).map(lambda n: good[:n]),  # truncated
        st.binary(max_size=64).filter(lambda b: not b.strip().startswith(b"{")),
        st.sampled_from((b"", b"[]", b"1", b"null", b'"x"', b"{", b'{"model": "hostile-ok",}', b"\xff\xfe{}")),
    ))
    return Case("bad JSON", draw(paths), content, REJECT)


@st.composite
def deep_nesting(draw: st.DrawFn) -> Case:
    """Objects or arrays nested thousands deep, in metadata or in the messages."""
    depth = draw(st.integers(100, 200_000))
    open_, close = draw(st.sampled_from(((b'{"a":', b"}"), (b"[", b"]"))))
    nested = open_ * depth + b"1" + close * depth
    where = draw(st.sampled_from(("metadata", "content")))
    if where == "metadata":
        content = b'{"model": "hostile-ok", "messages": [{"role": "user", "content": "hi"}], "metadata": {"deep": ' + nested + b"}}"
    else:
        content = b'{"model": "hostile-ok", "messages": [{"role": "user", "content": ' + nested + b"}]}"
    return Case(f"nested {depth} deep in {where}", draw(paths), content, EITHER)


@st.composite
def anthropic_embeddings(draw: st.DrawFn) -> Case:
    """An Anthropic-backed model asked for embeddings: refused, nothing held."""
    return Case("anthropic embeddings", draw(st.sampled_from(EMBED_PATHS)),
                orjson.dumps({"model": "hostile-claude", "input": draw(clean_text)}), REJECT)


hostile_requests = st.one_of(nul_in_recorded_string(), over_any_limit(), ordinary_unicode(), lone_surrogate(),
                             wrong_types(), stream_on_embeddings(), unknown_model(), bad_json(), deep_nesting(),
                             anthropic_embeddings())
