"""A tiny Prometheus text-format registry: counters, gauges and callback gauges, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels)
    return "{" + inner + "}"


@dataclass
class Metric:
    name: str
    help: str
    kind: str  # "counter" | "gauge"
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    callback: Callable[[], float] | None = None

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)


class Registry:
    def __init__(self, namespace: str = "tally") -> None:
        self.namespace = namespace
        self._metrics: dict[str, Metric] = {}

    def _add(self, name: str, help: str, kind: str, callback: Callable[[], float] | None = None) -> Metric:
        full = f"{self.namespace}_{name}"
        if full not in self._metrics:
            self._metrics[full] = Metric(full, help, kind, callback=callback)
        return self._metrics[full]

    def counter(self, name: str, help: str) -> Metric:
        return self._add(name, help, "counter")

    def gauge(self, name: str, help: str, callback: Callable[[], float] | None = None) -> Metric:
        return self._add(name, help, "gauge", callback)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            if metric.callback is not None:
                lines.append(f"{metric.name} {metric.callback()}")
            elif not metric.values:
                lines.append(f"{metric.name} 0")
            for labels, value in metric.values.items():
                lines.append(f"{metric.name}{_labels(labels)} {value}")
        return "\n".join(lines) + "\n"
