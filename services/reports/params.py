"""Query-parameter parsing for the spend routes: pure functions that either return a clean value
or raise BadRequest saying exactly what is wrong. Nothing here touches I/O."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from shared.errors import BadRequest
from shared.keys import hash_key
from shared.master_key import MASTER_KEY_ALIAS

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GROUP_BYS = ("team", "customer", "api_key")
MAX_LIMIT = 100_000
MAX_PAGE_SIZE = 1000
MAX_PAGE = 10**9  # page numbers of the paged log routes


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of UTC days."""

    start: date
    end: date

    @property
    def start_text(self) -> str:
        return self.start.isoformat()

    @property
    def end_text(self) -> str:
        return self.end.isoformat()

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=timezone.utc)

    @property
    def end_before(self) -> datetime:
        """The first instant after the range (exclusive upper bound)."""
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=timezone.utc) + timedelta(days=1)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def parse_date(name: str, raw: str) -> date:
    text = raw.strip()
    if not _DATE.match(text):
        raise BadRequest(f"{name} must be a date as YYYY-MM-DD, got {raw[:40]!r}", param=name)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"{name} is not a real date: {raw[:40]!r} ({exc})", param=name) from exc


def date_range(query: Mapping[str, str], *, required: bool = True, default_days: int | None = None,
               today: date | None = None, start_name: str = "start_date", end_name: str = "end_date") -> DateRange | None:
    """Both dates, inclusive, UTC. Missing dates: 400 when required, else the last `default_days`
    days ending today, else None."""
    raw_start, raw_end = query.get(start_name), query.get(end_name)
    if not raw_start and not raw_end:
        if required:
            raise BadRequest(f"Please provide {start_name} and {end_name} (YYYY-MM-DD)", param=start_name)
        if default_days is None:
            return None
        end = today or datetime.now(timezone.utc).date()
        return DateRange(end - timedelta(days=default_days - 1), end)
    if not raw_start:
        raise BadRequest(f"{start_name} is missing: give both {start_name} and {end_name}", param=start_name)
    if not raw_end:
        raise BadRequest(f"{end_name} is missing: give both {start_name} and {end_name}", param=end_name)
    start, end = parse_date(start_name, raw_start), parse_date(end_name, raw_end)
    if end < start:
        raise BadRequest(f"{end_name} {end} is before {start_name} {start}", param=end_name)
    return DateRange(start, end)


def parse_moment_range(query: Mapping[str, str]) -> tuple[datetime, datetime]:
    """/spend/logs/ui's start_date and end_date (both required): LiteLLM's "YYYY-MM-DD HH:MM:SS"
    (UTC, the end included) or a whole day "YYYY-MM-DD". Returns [start, end) as instants."""
    bounds = []
    for name in ("start_date", "end_date"):
        raw = (query.get(name) or "").strip()
        if not raw:
            raise BadRequest("Start date and end date are required", param=name)
        if _DATE.match(raw):
            day = parse_date(name, raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            if name == "end_date" and day == date.max:
                raise BadRequest(f"{name} is past the last date this service can count to", param=name)
            bounds.append(moment + timedelta(days=1) if name == "end_date" else moment)
            continue
        try:
            moment = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError as exc:
            raise BadRequest(f"{name} must be YYYY-MM-DD HH:MM:SS or YYYY-MM-DD, got {raw[:40]!r}", param=name) from exc
        bounds.append(moment + timedelta(microseconds=1) if name == "end_date" and moment.year < 9999 else moment)
    if bounds[1] <= bounds[0]:
        raise BadRequest("end_date is before start_date", param="end_date")
    return bounds[0], bounds[1]


def parse_decimal(name: str, raw: str | None) -> Decimal | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation as exc:
        raise BadRequest(f"{name} must be a number, got {raw[:40]!r}", param=name) from exc
    if not value.is_finite():
        raise BadRequest(f"{name} must be a finite number, got {raw[:40]!r}", param=name)
    return value


def parse_choice(name: str, raw: str | None, choices: tuple[str, ...], default: str | None) -> str | None:
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}; got {raw[:40]!r}", param=name)
    return raw


def parse_datetime_or_date(name: str, raw: object) -> date | None:
    """POST bodies carry startTime/endTime as ISO datetimes or dates; only the UTC day matters."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise BadRequest(f"{name} must be an ISO date or datetime string", param=name)
    text = raw.strip()
    if _DATE.match(text):
        return parse_date(name, text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name} must be an ISO date or datetime, got {raw[:40]!r}", param=name) from exc
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()


def parse_int(name: str, raw: str | None, *, default: int | None, minimum: int = 1, maximum: int = MAX_LIMIT) -> int | None:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise BadRequest(f"{name} must be a whole number, got {raw[:40]!r}", param=name) from exc
    if value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}, got {value}", param=name)
    if value > maximum:
        raise BadRequest(f"{name} must be at most {maximum}, got {value}", param=name)
    return value


def parse_bool(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    text = raw.strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise BadRequest(f"{name} must be true or false, got {raw[:40]!r}", param=name)


def parse_group_by(raw: str | None) -> str:
    if raw is None or raw == "":
        return "team"
    if raw not in GROUP_BYS:
        raise BadRequest(f"group_by must be one of team, customer, api_key; got {raw[:40]!r}", param="group_by")
    return raw


def comma_list(raw: str | None) -> list[str]:
    """"a,b, c" → ["a", "b", "c"]; empty items dropped."""
    if not raw:
        return []
    return [item.strip() for item in raw.split(",") if item.strip()]


def key_hash(raw: str | None, master_key: str | None = None) -> str | None:
    """A key given as "sk-..." is hashed; a 64-hex hash is taken as is (LiteLLM accepts both). The
    master key itself stands for its calls' label: its hash is never recorded (docs/security.md)."""
    if raw is None or raw == "":
        return None
    if master_key and hmac.compare_digest(raw.encode(), master_key.encode()):
        return MASTER_KEY_ALIAS
    return hash_key(raw) if raw.startswith("sk-") else raw
