"""The cost of /metrics: Tally's own registry (shared/metrics.py) against prometheus_client, single
process and in its multiprocess mode (what the proxy's workers would need). prometheus_client is
not a dependency: install it into the venv to run the comparison (`pip install prometheus_client`).

    python bench/bench_metrics.py

Figures: ns per counter increment, µs per exposition of 30 series. Writes bench/results/metrics.json."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.metrics import Registry  # noqa: E402

SERIES = 30
INCREMENTS = 200_000


def per_call(fn, number: int) -> float:  # noqa: ANN001
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def ours() -> dict[str, float]:
    registry = Registry()
    counter = registry.counter("bench_total", "bench")
    for i in range(SERIES - 1):
        registry.counter(f"bench_{i}_total", "bench").inc()
    return {"inc_ns": per_call(counter.inc, INCREMENTS) * 1e9, "render_us": per_call(registry.render, 200) * 1e6}


def prometheus(multiprocess: bool) -> dict[str, float]:
    import prometheus_client
    from prometheus_client import values

    if multiprocess:  # the mode is chosen from the environment when its modules load
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prom-")
        importlib.reload(values)
        importlib.reload(prometheus_client.metrics)
    registry = prometheus_client.CollectorRegistry()
    if multiprocess:
        from prometheus_client import multiprocess as mp

        mp.MultiProcessCollector(registry)
        make = lambda name: prometheus_client.metrics.Counter(name, "bench", registry=None)  # noqa: E731
    else:
        make = lambda name: prometheus_client.metrics.Counter(name, "bench", registry=registry)  # noqa: E731
    counter = make("bench")
    for i in range(SERIES - 1):
        make(f"bench_{i}").inc()
    render = lambda: prometheus_client.generate_latest(registry)  # noqa: E731
    return {"inc_ns": per_call(counter.inc, INCREMENTS) * 1e9, "render_us": per_call(render, 200) * 1e6}


def main() -> None:
    results = {"tally_registry": ours()}
    try:
        results["prometheus_client"] = prometheus(multiprocess=False)
        results["prometheus_client_multiprocess"] = prometheus(multiprocess=True)
    except ImportError:
        print("prometheus_client is not installed: only Tally's registry measured")
    for name, figures in results.items():
        print(f"{name:32} {figures['inc_ns']:8.0f} ns per increment {figures['render_us']:8.0f} µs per exposition of {SERIES} series")
    out = ROOT / "bench" / "results" / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
