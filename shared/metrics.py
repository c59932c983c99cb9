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


# One line of the text format: (name, help, kind, labels, value).
Sample = tuple[str, str, str, tuple[tuple[str, str], ...], float]


class Registry:
    def __init__(self, namespace: str = "tally") -> None:
        self.namespace = namespace
        self._metrics: dict[str, Metric] = {}
        # Several processes behind one /metrics (the proxy's workers): this one's label, and the
        # others' samples (worker_metrics.py).
        self.own_labels: tuple[tuple[str, str], ...] = ()
        self.peer_samples: Callable[[], list[Sample]] | None = None

    def _add(self, name: str, help: str, kind: str, callback: Callable[[], float] | None = None) -> Metric:
        full = f"{self.namespace}_{name}"
        if full not in self._metrics:
            self._metrics[full] = Metric(full, help, kind, callback=callback)
        return self._metrics[full]

    def counter(self, name: str, help: str) -> Metric:
        return self._add(name, help, "counter")

    def gauge(self, name: str, help: str, callback: Callable[[], float] | None = None) -> Metric:
        return self._add(name, help, "gauge", callback)

    def samples(self) -> list[Sample]:
        """This process's samples, with `own_labels` added."""
        out: list[Sample] = []
        for metric in self._metrics.values():
            if metric.callback is not None:
                values = {(): metric.callback()}
            else:
                values = metric.values or {(): 0.0}
            for labels, value in values.items():
                out.append((metric.name, metric.help, metric.kind, tuple(sorted(labels + self.own_labels)), value))
        return out

    def render(self) -> str:
        return render_samples(self.samples() + (self.peer_samples() if self.peer_samples is not None else []))


def render_samples(samples: list[Sample]) -> str:
    """The text format: each metric's HELP and TYPE once, then all its samples."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(sample[0], []).append(sample)
    lines: list[str] = []
    for name, family in families.items():
        lines.append(f"# HELP {name} {family[0][1]}")
        lines.append(f"# TYPE {name} {family[0][2]}")
        lines.extend(f"{name}{_labels(labels)} {value}" for _name, _help, _kind, labels, value in family)
    return "\n".join(lines) + "\n"
