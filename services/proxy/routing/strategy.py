"""How one deployment is chosen among the healthy ones of a model group (LiteLLM's
`router_settings.routing_strategy`). Pure: the caller passes the candidates, the random source and,
for least-busy, the in-flight counts it keeps."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

SIMPLE_SHUFFLE, LEAST_BUSY = "simple-shuffle", "least-busy"
STRATEGIES = (SIMPLE_SHUFFLE, LEAST_BUSY)


class Balanced(Protocol):
    """What a strategy reads of a deployment (routing.router.Target has these)."""

    model_id: str
    weight_setting: float | None
    rpm: int | None
    tpm: int | None


T = TypeVar("T", bound=Balanced)


def shuffle_weights(candidates: Sequence[Balanced]) -> list[float] | None:
    """LiteLLM's simple-shuffle weights: `weight` if the first deployment sets one, else `rpm`, else
    `tpm` (a deployment without the chosen setting weighs 0); None: a uniform draw."""
    first = candidates[0]
    if first.weight_setting is not None:
        weights = [float(c.weight_setting or 0) for c in candidates]
    elif first.rpm is not None:
        weights = [float(c.rpm or 0) for c in candidates]
    elif first.tpm is not None:
        weights = [float(c.tpm or 0) for c in candidates]
    else:
        return None
    return weights if sum(weights) > 0 else None


def simple_shuffle(candidates: Sequence[T], rng: random.Random) -> T:
    """A random deployment, in proportion to its weight when weights are set."""
    if len(candidates) == 1:
        return candidates[0]
    weights = shuffle_weights(candidates)
    if weights is None:
        return rng.choice(candidates)
    return rng.choices(candidates, weights)[0]


def least_busy(candidates: Sequence[T], in_flight: Mapping[str, int], rng: random.Random) -> T:
    """The deployment with the fewest calls in flight in this process; a tie is drawn at random."""
    fewest = min(in_flight.get(c.model_id, 0) for c in candidates)
    idle = [c for c in candidates if in_flight.get(c.model_id, 0) == fewest]
    return idle[0] if len(idle) == 1 else rng.choice(idle)
