"""What the adversarial suite checks after every hostile case (docs/adversarial.md): the answer
was a 2xx or a clean OpenAI-shaped error within a bound, an answered call is in the spend logs,
an ordinary call made next is in the spend logs within seconds at its exact cost, and every
admission, parallel-slot and budget-reservation gauge of the proxy is back to 0 with no double
settlement counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson
import psycopg
from hypothesis import HealthCheck, Phase, settings

from tests.fixtures import hostile_upstream as hostile
from tests.fixtures.polling import eventually
from tests.fixtures.stack import ROOT, TallyStack

# Per-token prices of every hostile deployment (custom prices: exact, independent of the price map).
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.000001"), Decimal("0.000002")
EMBED_PRICE = Decimal("0.0000001")
SLOW_TIMEOUT_S = 3  # the slow deployments' litellm_params.timeout: the proxy must give up by then
ANSWER_BOUND_S = 20.0  # no hostile case may take longer than this to answer (or be cut off)
RECORD_DEADLINE_S = 10.0  # "within a few seconds": an answered call is in the spend logs by then
SETTLE_DEADLINE_S = 5.0  # the gauges are back to 0 by then
GAUGES = ("tally_proxy_admissions_in_flight", "tally_proxy_parallel_requests_held", "tally_proxy_budget_reserved")
DOUBLE_SETTLEMENTS = "tally_proxy_double_settlements_total"
EMBED_MODES = ("ok", *hostile.BAD_USAGE, *hostile.ERRORS, "chunked_negative", "conflicting_length", "huge_body",
               "close_mid_body")

EXAMPLES = int(os.environ.get("TALLY_ADVERSARIAL_EXAMPLES", "25"))
# Derandomized: a CI failure reproduces on the next run. TALLY_ADVERSARIAL_RANDOM=1 explores new
# cases; TALLY_ADVERSARIAL_SHRINK=1 shrinks a failure (every try costs a pipeline round trip).
CASE_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    derandomize=os.environ.get("TALLY_ADVERSARIAL_RANDOM") != "1",
    phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get("TALLY_ADVERSARIAL_SHRINK") == "1" else []),
    suppress_health_check=list(HealthCheck),
)
# A hypothesis test's own time limit: 300 s, or ~8 s a case for longer runs.
TEST_TIMEOUT_S = max(300, EXAMPLES * 8)


def build_config() -> dict[str, Any]:
    """A model_list with one chat deployment `hostile-<mode>` per mode, embeddings deployments
    `hostile-embed-<mode>` for some, and an Anthropic one (`hostile-claude`), all on the hostile
    upstream."""
    base = {"api_base": "os.environ/TALLY_DEMO_UPSTREAM", "api_key": "hostile-not-used"}
    chat_prices = {"input_cost_per_token": str(INPUT_PRICE), "output_cost_per_token": str(OUTPUT_PRICE)}
    models: list[dict[str, Any]] = []
    for mode in hostile.MODES:
        params = {"model": f"openai/{mode}", **base, **chat_prices}
        if mode.startswith("slow") and mode != "slow_ok":
            params["timeout"] = SLOW_TIMEOUT_S
        models.append({"model_name": f"hostile-{mode}", "litellm_params": params})
    for mode in EMBED_MODES:
        models.append({"model_name": f"hostile-embed-{mode}", "model_info": {"mode": "embedding"},
                       "litellm_params": {"model": f"openai/{mode}", **base, "input_cost_per_token": str(EMBED_PRICE)}})
    models.append({"model_name": "hostile-claude", "litellm_params": {"model": "anthropic/claude-3-haiku-20240307", **base}})
    return {"model_list": models, "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}


def chat_cost(prompt: int, completion: int) -> Decimal:
    return prompt * INPUT_PRICE + completion * OUTPUT_PRICE


@dataclass(frozen=True)
class Reply:
    """What the client saw: a status and body, or the transport error that ended the exchange."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None  # a transport error (reset, protocol error, timeout), if any
    timed_out: bool
    elapsed_s: float

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def call_id(self) -> str | None:
        return self.headers.get("x-litellm-call-id")

    @property
    def complete_stream(self) -> bool:
        """Ended with `data: [DONE]` and no error event: what a client takes for a whole answer."""
        return self.body.rstrip().endswith(b"data: [DONE]") and b'data: {"error"' not in self.body

    def describe(self) -> str:
        return f"status {self.status}, error {self.error}, {self.elapsed_s:.1f}s, body {self.body[:300]!r}"


def openai_error(reply: Reply) -> dict[str, Any]:
    """The `error` object of an error answer, asserting OpenAI's shape {"error": {message, type, param, code}}."""
    try:
        data = reply.json()
    except orjson.JSONDecodeError as exc:
        raise AssertionError(f"error answer is not JSON: {reply.describe()}") from exc
    assert isinstance(data, dict) and isinstance(data.get("error"), dict), f"not OpenAI's error shape: {reply.describe()}"
    error = data["error"]
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), reply.describe()
    assert "param" in error and "code" in error, f"error without param/code: {reply.describe()}"
    return error


class Adversary:
    """A client of the stack's proxy with the adversary's key, and the checks between cases."""

    def __init__(self, stack: TallyStack) -> None:
        self.stack = stack
        self.key = ""  # set per test: new_key()
        self.client = httpx.Client(base_url=stack.url("proxy"), timeout=httpx.Timeout(ANSWER_BOUND_S, connect=5))
        self.db = psycopg.connect(stack.common.database_url, autocommit=True)

    def __enter__(self) -> Adversary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.db.close()

    def new_key(self) -> str:
        """A virtual key with a $1000 budget and max_parallel_requests=2, once the proxy knows it."""
        master = {"Authorization": f"Bearer {self.stack.master_key}"}
        body = {"key_alias": f"adversary-{uuid.uuid4().hex[:8]}", "max_budget": 1000, "max_parallel_requests": 2}

        def generated() -> httpx.Response | None:  # a 503 (the entity topic not writable yet) is retried
            answer = self.client.post("/key/generate", headers=master, json=body)
            assert answer.status_code in (200, 503), answer.text
            return answer if answer.status_code == 200 else None

        key = eventually(generated, 15, "a key from /key/generate", 0.2).json()["key"]
        eventually(lambda: self.client.get("/key/info", params={"key": key}, headers=master).status_code == 200, 15,
                 "the proxy to know the adversary's key")
        return key

    # -- sending ----------------------------------------------------------------------------------

    def send(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> Reply:
        """POST raw bytes with the adversary's key; read the whole answer or note how it ended."""
        began = time.monotonic()
        sent = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **(headers or {})}
        status, got, body = None, {}, bytearray()
        try:
            with self.client.stream("POST", path, content=content, headers=sent) as response:
                status, got = response.status_code, {k.lower(): v for k, v in response.headers.items()}
                for piece in response.iter_raw():
                    body += piece
        except httpx.TimeoutException as exc:
            return Reply(status, got, bytes(body), f"{type(exc).__name__}: {exc}", True, time.monotonic() - began)
        except httpx.TransportError as exc:
            return Reply(status, got, bytes(body), f"{type(exc).__name__}: {exc}", False, time.monotonic() - began)
        return Reply(status, got, bytes(body), None, False, time.monotonic() - began)

    def chat(self, model: str, *, stream: bool = False, include_usage: bool = False, **extra: Any) -> Reply:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
        if stream:
            body["stream"] = True
            if include_usage:
                body["stream_options"] = {"include_usage": True}
        return self.send("/chat/completions", orjson.dumps(body))

    def upstream_calls(self) -> int:
        """How many LLM requests the hostile upstream has received so far."""
        return int(httpx.get(self.stack.url("upstream") + "/_calls", timeout=5).json()["calls"])

    # -- the books --------------------------------------------------------------------------------

    def spend_row(self, request_id: str) -> tuple[Decimal, int, int] | None:
        row = self.db.execute('SELECT spend, prompt_tokens, completion_tokens FROM "LiteLLM_SpendLogs" WHERE request_id = %s',
                              (request_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def recorded(self, request_id: str, deadline_s: float = RECORD_DEADLINE_S) -> tuple[Decimal, int, int]:
        """The spend log row of `request_id`, polled for until the deadline (then the test fails)."""
        return eventually(lambda: self.spend_row(request_id), deadline_s,
                          f"call {request_id} in the spend logs (pipeline logs in {self.stack.log_dir})", 0.05)

    def ordinary_call_recorded(self) -> None:
        """An ordinary call now: answered 200 and in the spend logs within seconds, at its exact cost."""
        reply = self.chat("hostile-ok")
        assert (reply.status, reply.error) == (200, None), f"the ordinary call after the case failed: {reply.describe()}"
        assert reply.call_id is not None
        assert self.recorded(reply.call_id) == (chat_cost(10, 20), 10, 20)

    # -- the proxy's in-flight state --------------------------------------------------------------

    def gauges(self) -> dict[str, float | None]:
        """The three in-flight gauges and the double-settlement counter, summed over workers
        (None: the proxy does not expose it)."""
        text = httpx.get(self.stack.url("proxy") + "/metrics", timeout=5,
                         headers={"Authorization": f"Bearer {self.stack.master_key}"}).text
        found: dict[str, float | None] = dict.fromkeys((*GAUGES, DOUBLE_SETTLEMENTS))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in found:
                found[name] = (found[name] or 0.0) + float(line.rsplit(" ", 1)[1])
        return found

    def assert_settled(self) -> None:
        """Every admission, parallel slot and reservation released (polled for a few seconds), and
        no admission settled twice."""
        zero = dict.fromkeys((*GAUGES, DOUBLE_SETTLEMENTS), 0.0)
        seen: dict[str, float | None] = {}

        def settled() -> bool:
            seen.update(self.gauges())
            return seen == zero

        try:
            eventually(settled, SETTLE_DEADLINE_S, "the proxy's in-flight gauges back to 0", 0.05)
        except AssertionError as exc:
            raise AssertionError(f"proxy in-flight state after the case: {seen}") from exc

    def after_case(self) -> None:
        """The checks that follow every hostile case."""
        self.ordinary_call_recorded()
        self.assert_settled()

    # -- operator commands ------------------------------------------------------------------------

    def command(self, *args: str, timeout: float = 180) -> tuple[int, str]:
        """Run `python -m <args>` against this stack; (exit status, output)."""
        env = self.stack.env_for(self.stack.services["ledger"])  # the services' own environment
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, timeout=timeout)
        return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
