"""`make price-map`: bring the default catalog up to the newest LiteLLM release's bundled price map.

    python -m shared.pricing.refresh            # fetch, show what changes, write nothing
    python -m shared.pricing.refresh --apply    # ... and update data/model_prices.json

The map is `litellm/model_prices_and_context_window_backup.json` inside the newest `litellm`
wheel on PyPI (its JSON API names the wheel and its sha256, which is checked). The same curation
as data/SOURCE.md describes is applied: the providers and modes listed there, the fields pricing
and the model routes read, numbers kept as the text LiteLLM publishes. Entries LiteLLM has since
dropped stay (spend logs and configs still name them), and so do the entries PINNED lists.
data/upstream.json records the release, the wheel and its digest."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from shared.pricing.catalog import DEFAULT_CATALOG_PATH, SAMPLE_SPEC, parse_price_text

PYPI_JSON = "https://pypi.org/pypi/litellm/json"
MAP_IN_WHEEL = "litellm/model_prices_and_context_window_backup.json"
RECORD_PATH = DEFAULT_CATALOG_PATH.with_name("upstream.json")
TIMEOUT_S = 120

PROVIDERS = frozenset({
    "fireworks_ai", "fireworks_ai-embedding-models", "openai", "text-completion-openai", "azure", "bedrock",
    "bedrock_converse", "gemini", "vertex_ai", "vertex_ai-language-models", "vertex_ai-anthropic_models",
    "vertex_ai-embedding-models", "vertex_ai-image-models", "mistral", "xai", "together_ai", "groq", "anthropic",
    "perplexity", "cohere", "cohere_chat", "deepseek",
})
MODES = frozenset({"chat", "completion", "embedding", "image_generation", "audio_transcription", "audio_speech",
                   "moderation", "responses"})
FIELDS = frozenset({"litellm_provider", "mode", "max_input_tokens", "max_output_tokens", "max_tokens", "deprecation_date",
                    "supports_vision", "supports_function_calling", "supports_parallel_function_calling",
                    "supports_reasoning", "supports_web_search", "supports_url_context"})
# LiteLLM's newest map turned these chat models into embedding entries (output free, 8k context):
# the catalog keeps its own entries for them (data/SOURCE.md).
PINNED = frozenset({"gemini/gemini-1.5-flash", "gemini-flash-experimental"})


class Raw(str):
    """A JSON number kept as the text it was written with."""


def read_map(text: str) -> dict[str, Any]:
    return json.loads(text, parse_float=Raw, parse_int=Raw)


def curated(upstream: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries and fields the default catalog carries (data/SOURCE.md)."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in upstream.items():
        if name == SAMPLE_SPEC or not isinstance(entry, dict):
            continue
        if entry.get("litellm_provider") not in PROVIDERS or entry.get("mode") not in MODES:
            continue
        if name.startswith("bedrock/"):  # per-region and commitment variants
            continue
        kept = {k: v for k, v in entry.items()
                if k in FIELDS or ("cost" in k and not isinstance(v, dict | list))}
        out[name] = kept
    return out


def merged(current: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """The fresh entries, plus the current ones LiteLLM no longer has, and the pinned ones as they are."""
    result = dict(fresh)
    for name, entry in current.items():
        if name not in fresh or name in PINNED:
            result[name] = entry
    return result


def price_changes(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per model added or dropped, and per price field whose value changed."""
    lines = []
    for name in sorted(set(current) | set(new)):
        if name == SAMPLE_SPEC:
            continue
        old, fresh = current.get(name), new.get(name)
        if old is None:
            lines.append(f"+ {name}")
            continue
        if fresh is None:
            lines.append(f"- {name}")
            continue
        for field in sorted(set(old) | set(fresh)):
            if "cost" not in field:
                continue
            a, b = _number(old.get(field)), _number(fresh.get(field))
            if a != b:
                lines.append(f"~ {name} {field}: {_shown(a)} -> {_shown(b)}")
    return lines


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None and not isinstance(value, dict | list | bool) else None
    except ArithmeticError:
        return None


def _shown(value: Decimal | None) -> str:
    return "none" if value is None else format(value.normalize(), "f")


def dump(entries: Mapping[str, Any]) -> str:
    """The file as the repository keeps it: sample_spec first, then by name, four-space indent,
    numbers as LiteLLM wrote them."""
    ordered = {SAMPLE_SPEC: entries[SAMPLE_SPEC]} if SAMPLE_SPEC in entries else {}
    ordered.update((name, entries[name]) for name in sorted(entries) if name != SAMPLE_SPEC)
    return _value(ordered, 0) + "\n"


def _value(value: Any, depth: int) -> str:
    pad, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_value(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        return json.dumps([json.loads(_value(v, 0)) for v in value])
    if isinstance(value, Raw):
        return str(value)
    return json.dumps(value)


def fetch(version: str | None = None) -> tuple[str, str, str, str]:
    """(release, wheel file name, wheel sha256, the map's text) of the newest (or the given) release."""
    url = PYPI_JSON if version is None else f"https://pypi.org/pypi/litellm/{version}/json"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        meta = json.load(response)
    release = meta["info"]["version"]
    wheels = [f for f in meta["urls"] if f["packagetype"] == "bdist_wheel"]
    if not wheels:
        raise SystemExit(f"litellm {release} has no wheel on PyPI")
    # Every wheel bundles the same map; a pure-Python one is the plainest to name.
    wheel = next((f for f in wheels if f["filename"].endswith("-none-any.whl")), wheels[0])
    wheel_url = urllib.parse.urljoin(url, wheel["url"])  # a mirror may answer with relative links
    with urllib.request.urlopen(wheel_url, timeout=TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != wheel["digests"]["sha256"]:
        raise SystemExit(f"{wheel_url}: sha256 {digest}, PyPI says {wheel['digests']['sha256']}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read(MAP_IN_WHEEL).decode("utf-8")
    return release, wheel["filename"], digest, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.pricing.refresh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--apply", action="store_true", help="write the updated default catalog")
    parser.add_argument("--version", help="a litellm release (default: the newest)")
    parser.add_argument("--show", type=int, default=60, help="how many changed prices to print (default 60)")
    args = parser.parse_args(argv)

    release, wheel_name, digest, text = fetch(args.version)
    current = read_map(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    new = merged(current, curated(read_map(text)))
    if SAMPLE_SPEC in current:
        new[SAMPLE_SPEC] = current[SAMPLE_SPEC]
    changes = price_changes(current, new)
    print(f"litellm {release} ({MAP_IN_WHEEL}): {len(new) - (SAMPLE_SPEC in new)} models, {len(changes)} changes "
          f"({sum(c.startswith('+') for c in changes)} added, {sum(c.startswith('~') for c in changes)} prices changed)")
    for line in changes[: args.show]:
        print("  " + line)
    if len(changes) > args.show:
        print(f"  ... {len(changes) - args.show} more (--show N)")
    if not args.apply:
        print("nothing written (run with --apply, or `make price-map`)")
        return 0
    output = dump(new)
    parse_price_text(output, str(DEFAULT_CATALOG_PATH))  # refuse to write what the services could not load
    DEFAULT_CATALOG_PATH.write_text(output, encoding="utf-8")
    RECORD_PATH.write_text(json.dumps({
        "package": "litellm", "version": release, "file": MAP_IN_WHEEL, "wheel": wheel_name, "wheel_sha256": digest,
        "fetched_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {DEFAULT_CATALOG_PATH} and {RECORD_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
