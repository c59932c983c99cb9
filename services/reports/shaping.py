"""The pure core: turns rows the store aggregated (Decimal sums, whole-number counts) into
LiteLLM's response shapes. No I/O, no floats: every sum here is Decimal + Decimal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Context, Decimal
from typing import Any

ZERO = Decimal(0)
UNASSIGNED_TEAM = "Unassigned"  # /global/spend/teams' label, as in LiteLLM (the report says "Unassigned Team")

METRIC_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "api_requests",
    "successful_requests",
    "failed_requests",
)


def spend_logs_by_day(rows: Iterable[Mapping[str, Any]], *, fill_until: date | None) -> list[dict[str, Any]]:
    """/spend/logs summarised: one entry per day with the day's spend, spend per api key (as a
    top-level field, as LiteLLM does), per user and per model. Days without spend between the first
    and `fill_until` appear with zero spend."""
    days: dict[date, dict[str, Any]] = {}
    for row in rows:
        day = days.setdefault(row["date"], {"spend": ZERO, "users": {}, "models": {}, "keys": {}})
        spend = row["spend"]
        day["spend"] += spend
        day["keys"][row["api_key"]] = day["keys"].get(row["api_key"], ZERO) + spend
        user = row["user"] or ""
        day["users"][user] = day["users"].get(user, ZERO) + spend
        day["models"][row["model"]] = day["models"].get(row["model"], ZERO) + spend
    if not days:
        return []
    out: list[dict[str, Any]] = []
    current, last = min(days), max(max(days), fill_until or max(days))
    while current <= last:
        day = days.get(current)
        if day is None:
            out.append({"startTime": current.isoformat(), "spend": ZERO, "users": {}, "models": {}})
        else:
            entry: dict[str, Any] = {"startTime": current.isoformat(), "spend": day["spend"]}
            for api_key, spend in day["keys"].items():
                if api_key not in ("startTime", "spend", "users", "models"):
                    entry[api_key] = spend
            entry["users"] = day["users"]
            entry["models"] = day["models"]
            out.append(entry)
        current += timedelta(days=1)
    return out


def teams_daily(rows: Iterable[Mapping[str, Any]], top: int = 10) -> dict[str, Any]:
    """/global/spend/teams: spend per day per team name, the names, and the top teams overall."""
    by_day: dict[str, dict[str, Decimal]] = {}
    totals: dict[str, Decimal] = {}
    for row in rows:
        name = row["team_alias"] or UNASSIGNED_TEAM
        day = row["date"].isoformat() if isinstance(row["date"], date) else str(row["date"])
        by_day.setdefault(day, {})
        by_day[day][name] = by_day[day].get(name, ZERO) + row["spend"]
        totals[name] = totals.get(name, ZERO) + row["spend"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return {
        "daily_spend": [{"date": day, **teams} for day, teams in sorted(by_day.items())],
        "teams": sorted(totals),
        "total_spend_per_team": [{"team_id": name, "total_spend": spend} for name, spend in ranked[:top]],
    }


def tag_spend(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """/global/spend/tags: {"spend_per_tag": [{name, spend, log_count}]}, highest spend first."""
    tags = [{"name": r["tag"], "spend": r["spend"], "log_count": int(r["log_count"])} for r in rows]
    tags.sort(key=lambda t: (-t["spend"], t["name"]))
    return {"spend_per_tag": tags}


@dataclass
class Metrics:
    spend: Decimal = ZERO
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    api_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.spend += row["spend"]
        for name in METRIC_FIELDS:
            setattr(self, name, getattr(self, name) + int(row[name]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "spend": self.spend,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "api_requests": self.api_requests,
            "successful_requests": self.successful_requests,
            "failed_requests": self.failed_requests,
        }


@dataclass
class _Day:
    metrics: Metrics = field(default_factory=Metrics)
    models: dict[str, Metrics] = field(default_factory=dict)
    model_groups: dict[str, Metrics] = field(default_factory=dict)
    providers: dict[str, Metrics] = field(default_factory=dict)
    api_keys: dict[str, Metrics] = field(default_factory=dict)
    entities: dict[str, Metrics] = field(default_factory=dict)


def _bump(bucket: dict[str, Metrics], name: str, row: Mapping[str, Any]) -> None:
    bucket.setdefault(name, Metrics()).add(row)


def daily_activity(rows: Iterable[Mapping[str, Any]], *, totals: Mapping[str, Any], key_metadata: Mapping[str, Mapping[str, Any]],
                   page: int, page_size: int, total_rows: int) -> dict[str, Any]:
    """LiteLLM's daily activity shape (SpendAnalyticsPaginatedResponse): per date, metrics and a
    breakdown by model, model group, provider, api key and entity; metadata holds the totals over
    every matching row (not just this page) and the paging."""
    days: dict[str, _Day] = {}
    for row in rows:
        day = days.setdefault(str(row["date"]), _Day())
        day.metrics.add(row)
        _bump(day.models, row["model"], row)
        _bump(day.model_groups, row["model_group"], row)
        _bump(day.providers, row["custom_llm_provider"], row)
        _bump(day.api_keys, row["api_key"], row)
        _bump(day.entities, row["entity"], row)
    results = []
    for day_text, day in sorted(days.items()):
        results.append({
            "date": day_text,
            "metrics": day.metrics.as_dict(),
            "breakdown": {
                "models": {k: {"metrics": m.as_dict(), "metadata": {}} for k, m in day.models.items()},
                "model_groups": {k: {"metrics": m.as_dict(), "metadata": {}} for k, m in day.model_groups.items()},
                "providers": {k: {"metrics": m.as_dict(), "metadata": {}} for k, m in day.providers.items()},
                "api_keys": {
                    k: {"metrics": m.as_dict(), "metadata": dict(key_metadata.get(k, {"key_alias": None, "team_id": None}))}
                    for k, m in day.api_keys.items()
                },
                "entities": {k: {"metrics": m.as_dict(), "metadata": {}} for k, m in day.entities.items()},
            },
        })
    total = Metrics()
    total.add(totals)
    t = total.as_dict()
    total_pages = max(1, -(-total_rows // page_size))
    return {
        "results": results,
        "metadata": {
            "total_spend": t["spend"],
            "total_prompt_tokens": t["prompt_tokens"],
            "total_completion_tokens": t["completion_tokens"],
            "total_tokens": t["total_tokens"],
            "total_api_requests": t["api_requests"],
            "total_successful_requests": t["successful_requests"],
            "total_failed_requests": t["failed_requests"],
            "total_cache_read_input_tokens": t["cache_read_input_tokens"],
            "total_cache_creation_input_tokens": t["cache_creation_input_tokens"],
            "page": page,
            "total_pages": total_pages,
            "has_more": page < total_pages,
        },
    }


KeyModelSums = dict[tuple[str, str], list[Any]]  # (api_key, model) -> [cost, input tokens, output tokens]
_EXACT = Context(prec=1000)  # sums of NUMERIC amounts are exact: never rounded to 28 digits


def add_key_model_rows(sums: KeyModelSums, rows: Iterable[Mapping[str, Any]]) -> KeyModelSums:
    """Adds (api_key, model, total_cost, total_input_tokens, total_output_tokens) rows into `sums`
    (a new dict: `sums` itself is left as it was)."""
    out = {pair: list(acc) for pair, acc in sums.items()}
    for row in rows:
        pair = (row["api_key"], row["model"])
        acc = out.get(pair)
        if acc is None:
            out[pair] = [row["total_cost"], int(row["total_input_tokens"]), int(row["total_output_tokens"])]
        else:
            acc[0] = _EXACT.add(acc[0], row["total_cost"])
            acc[1] += int(row["total_input_tokens"])
            acc[2] += int(row["total_output_tokens"])
    return out


def key_report(sums: KeyModelSums) -> list[dict[str, Any]]:
    """(key, model) sums → the seed's per-key shape: totals and model_details, highest cost first
    (ties by key, then model, in code-point order)."""
    per_key: dict[str, list[dict[str, Any]]] = {}
    for (api_key, model), (cost, tokens_in, tokens_out) in sums.items():
        per_key.setdefault(api_key, []).append(
            {"model": model, "total_cost": cost, "total_input_tokens": tokens_in, "total_output_tokens": tokens_out})
    out = []
    for api_key, details in per_key.items():
        details.sort(key=lambda d: (d["total_cost"].copy_negate(), d["model"]))
        total = ZERO
        for d in details:
            total = _EXACT.add(total, d["total_cost"])
        out.append({
            "api_key": api_key,
            "total_cost": total,
            "total_input_tokens": sum(d["total_input_tokens"] for d in details),
            "total_output_tokens": sum(d["total_output_tokens"] for d in details),
            "model_details": details,
        })
    out.sort(key=lambda k: (k["total_cost"].copy_negate(), k["api_key"]))
    return out


def join_days(fragments: Iterable[str]) -> bytes:
    """Per-day JSON objects (already exact JSON) → one JSON list."""
    return ("[" + ",".join(fragments) + "]").encode()
