"""The Usage page's figures, pure: which table answers a grouped, filtered question, the spend no
team or customer was named for, every day of the range filled in, and the answer's shape.

Each daily rollup holds one entity dimension (team, customer or tag) beside key and model, so a
question touching at most one of them is answered from that rollup (or from the api-key rollup
when it touches none); one touching two or more reads the spend logs of the range."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.reports.params import DateRange
from shared.errors import BadRequest

DIMENSIONS = ("key", "model", "team", "customer", "tag")
ENTITY_DIMENSIONS = ("team", "customer", "tag")  # each has a rollup of its own
# Spend without a team or customer is the api-key rollup minus the named rollup; a tag-less log is
# not a tag, so tags have no such remainder.
WITH_REMAINDER = ("team", "customer")
MEASURES = ("spend", "api_requests", "successful_requests", "failed_requests", "prompt_tokens", "completion_tokens",
            "cache_read_input_tokens")
TOP_ROWS = 10
STACKS = 7  # the biggest series drawn on their own; the rest is one "other" series
OTHER = "(other)"


@dataclass(frozen=True)
class Filters:
    """What every panel is narrowed to. `keys` are key hashes (the page's alias or hash prefix,
    resolved by the handler); None means no key filter, an empty tuple a filter matching no key."""

    keys: tuple[str, ...] | None = None
    model: str | None = None
    team: str | None = None
    customer: str | None = None
    tag: str | None = None

    def entity(self, dimension: str) -> str | None:
        return {"team": self.team, "customer": self.customer, "tag": self.tag}.get(dimension)


@dataclass(frozen=True)
class Source:
    """Where a grouped question is answered: one rollup (`entity` names its dimension, None for the
    api-key rollup) or the spend logs."""

    kind: str  # "rollup" or "logs"
    entity: str | None = None


def parse_dimension(name: str, raw: str | None, default: str) -> str:
    if raw is None or raw == "":
        return default
    if raw not in DIMENSIONS:
        raise BadRequest(f"{name} must be one of {', '.join(DIMENSIONS)}; got {raw[:40]!r}", param=name)
    return raw


def source_for(filters: Filters, group: Sequence[str]) -> Source:
    entities = {d for d in ENTITY_DIMENSIONS if filters.entity(d) is not None or d in group}
    if len(entities) > 1:
        return Source("logs")
    return Source("rollup", next(iter(entities), None))


def needs_remainder(filters: Filters, group: Sequence[str]) -> str | None:
    """The entity whose unnamed remainder ('' rows) must be added to a rollup answer, if any."""
    source = source_for(filters, group)
    if source.kind == "rollup" and source.entity in WITH_REMAINDER and filters.entity(source.entity) is None:
        return source.entity
    return None


def _zero() -> dict[str, Any]:
    return {m: (Decimal(0) if m == "spend" else 0) for m in MEASURES}


def _add(into: dict[str, Any], row: Mapping[str, Any], sign: int = 1) -> None:
    for m in MEASURES:
        into[m] += sign * (row.get(m) or 0)


def add_remainder(named: Iterable[Mapping[str, Any]], every_key: Iterable[Mapping[str, Any]], entity: str,
                  others: Sequence[str]) -> list[dict[str, Any]]:
    """The named rows plus, per value of the `others` columns, a row with entity '' holding what the
    api-key rollup has beyond the named rollup (exact: Decimal and int arithmetic)."""
    out = [dict(r) for r in named]
    remainder: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in every_key:
        _add(remainder.setdefault(tuple(row[c] for c in others), _zero()), row)
    for row in out:
        key = tuple(row[c] for c in others)
        if key in remainder:
            _add(remainder[key], row, -1)
    for key, measures in remainder.items():
        if measures["api_requests"] > 0:
            out.append({**dict(zip(others, key)), entity: "", **measures})
    return out


def daily(days: DateRange, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per day of the range, in order; days without rows are zeros."""
    by_day = {day.isoformat(): {"date": day.isoformat(), **_zero()} for day in days.days()}
    for row in rows:
        if row["date"] in by_day:
            _add(by_day[row["date"]], row)
    return list(by_day.values())


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out = _zero()
    for row in rows:
        _add(out, row)
    return out


def stacks(days: DateRange, rows: Iterable[Mapping[str, Any]], dimension: str) -> list[dict[str, Any]]:
    """Spend per day for each value of `dimension`, biggest first: the STACKS biggest on their own,
    the rest summed as one (other) series. Every series has one exact amount per day of the range."""
    index = {day.isoformat(): i for i, day in enumerate(days.days())}
    series: dict[str, list[Decimal]] = {}
    for row in rows:
        if row["date"] in index:
            series.setdefault(row[dimension], [Decimal(0)] * len(index))[index[row["date"]]] += row["spend"]
    ranked = sorted(series.items(), key=lambda item: (-sum(item[1]), item[0]))
    kept, rest = ranked[:STACKS], ranked[STACKS:]
    out = [{"name": name, "spend": sum(values, Decimal(0)), "daily": values} for name, values in kept]
    if rest:
        merged = [sum(values, Decimal(0)) for values in zip(*(values for _, values in rest))]
        out.append({"name": OTHER, "spend": sum(merged, Decimal(0)), "daily": merged})
    return out


def top(rows: Iterable[Mapping[str, Any]], dimension: str, labels: Mapping[str, str] | None = None,
        limit: int = TOP_ROWS) -> list[dict[str, Any]]:
    """The biggest values of `dimension` by spend (then by name), with their measures and label."""
    ranked = sorted(rows, key=lambda r: (-r["spend"], r[dimension]))[:limit]
    return [{"name": r[dimension], "label": (labels or {}).get(r[dimension]) or r[dimension],
             **{m: r[m] for m in MEASURES}} for r in ranked]
