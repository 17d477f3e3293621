"""The guardrails runtime: load the exported limits and check each request against them.

Pure Python on purpose: production imports this without DuckDB, numpy, scikit-learn or pydantic.

    from advisor.guard import load_guardrails
    guard = load_guardrails("guardrails.yaml")      # from `advisor export guardrails`
    verdict = guard.check({"user": "u1", "account": "a1", "feature": "chat",
                           "input_tokens": 1200, "max_tokens": 4000}, now=now)
    if verdict.allowed:
        response = call(max_tokens=verdict.max_tokens)   # lowered to a `cap` limit's value
        guard.record(verdict, now=now, tokens=used_tokens, spend=cost)

It is also the single definition of what a limit does; the back-test in
`advisor.guardrails.limits` replays the logged history through it where a replay is needed, so
the figures the analysis reports and the decisions production takes cannot disagree:
- a per-request limit refuses a request whose input_tokens exceed it; a `cap` limit on max_tokens
  lowers the request's max_tokens to its value (the request is admitted);
- a sliding window (1m, 1h) refuses a request at `now` when the subject's admitted requests (or
  recorded tokens) in (now - window, now] already reach the value; a refused request consumes
  nothing;
- a calendar budget (1d, 1mo, UTC) refuses when the subject's recorded tokens or spend in the
  current day or month have reached the value: the request that crosses it was admitted.
A check that allows counts toward every request window at once; `record` adds the call's tokens
and spend afterwards (unknown spend adds nothing).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError

GUARDRAILS_VERSION = 1
SLIDING_SECONDS = {"1m": 60, "1h": 3600}
CALENDAR_WINDOWS = ("1d", "1mo")
SCOPES = ("feature", "user", "account", "global")
METRICS = ("input_tokens", "max_tokens", "requests", "tokens", "spend")
# the request key naming a limit's subject, per scope
REQUEST_KEYS = {"feature": "feature", "user": "user", "account": "account"}
ALL = "all"  # the subject of a global limit
EACH = "*"  # one value for each user or account


@dataclass(frozen=True)
class GuardLimit:
    """One exported limit: `value` is an int (tokens, requests) or a Decimal (USD)."""

    id: str
    scope: str
    subject: str
    metric: str
    window: str
    value: int | Decimal
    action: str = "refuse"

    def subject_of(self, request: Mapping[str, Any]) -> str | None:
        """The key this request counts under for this limit; None: the limit does not apply."""
        if self.scope == "global":
            return ALL
        raw = request.get(REQUEST_KEYS[self.scope])
        if raw is None or raw == "":
            return None
        key = str(raw)
        if self.scope == "feature" and key != self.subject:
            return None
        return key


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: `limit_id` is the first limit that refused it (None when
    allowed); `max_tokens` the value to send (the request's own, lowered to a cap); `retry_after`
    the seconds until a rate window admits it again (None for a budget: it resets with the
    calendar window)."""

    allowed: bool
    limit_id: str | None = None
    max_tokens: int | None = None
    retry_after: float | None = None
    capped: bool = False
    request: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _calendar_key(window: str, now: dt.datetime) -> tuple[int, ...]:
    return (now.year, now.month, now.day) if window == "1d" else (now.year, now.month)


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(dt.UTC)


class Guard:
    """Limits with their running state (one process; not thread-safe)."""

    def __init__(self, limits: list[GuardLimit]) -> None:
        self.limits = limits
        # sliding windows: (limit id, subject) -> deque of (time, amount), oldest first
        self._windows: dict[tuple[str, str], deque[tuple[dt.datetime, int]]] = {}
        # calendar budgets: (limit id, subject) -> (window key, total so far)
        self._budgets: dict[tuple[str, str], tuple[tuple[int, ...], int | Decimal]] = {}

    def _window(self, limit: GuardLimit, subject: str, now: dt.datetime) -> deque[Any]:
        entries = self._windows.setdefault((limit.id, subject), deque())
        start = now - dt.timedelta(seconds=SLIDING_SECONDS[limit.window])
        while entries and entries[0][0] <= start:  # (now - window, now]: the start is outside
            entries.popleft()
        return entries

    def _budget(self, limit: GuardLimit, subject: str, now: dt.datetime) -> int | Decimal:
        key, total = self._budgets.get((limit.id, subject), ((), 0))
        return total if key == _calendar_key(limit.window, now) else 0

    def _refusal(
        self, limit: GuardLimit, subject: str, request: Mapping[str, Any], now: dt.datetime
    ) -> tuple[bool, float | None]:
        """(refused, retry_after) of one limit on its own."""
        if limit.window == "request":
            tokens = request.get("input_tokens")
            return (
                limit.metric == "input_tokens" and tokens is not None and tokens > limit.value,
                None,
            )
        if limit.window in SLIDING_SECONDS:
            entries = self._window(limit, subject, now)
            used = sum(amount for _, amount in entries)
            if used < limit.value:
                return False, None
            # the time when enough of the oldest entries have left the window
            left, cut = used, None
            for when, amount in entries:
                left -= amount
                cut = when
                if left < limit.value:
                    break
            assert cut is not None
            span = dt.timedelta(seconds=SLIDING_SECONDS[limit.window])
            return True, (cut + span - now).total_seconds()
        return self._budget(limit, subject, now) >= limit.value, None

    def check(self, request: Mapping[str, Any], now: dt.datetime) -> Verdict:
        """Decide one request at `now` (timezone-aware); an allowed request is admitted: it
        counts toward every request-rate window it falls under."""
        now = _utc(now)
        applied = [(lim, s) for lim in self.limits if (s := lim.subject_of(request)) is not None]
        for limit, subject in applied:
            refused, retry = self._refusal(limit, subject, request, now)
            if refused:
                return Verdict(False, limit.id, None, retry, request=request)
        max_tokens = request.get("max_tokens")
        capped = False
        for limit, _ in applied:
            if limit.metric == "max_tokens":
                cap = int(limit.value)
                if max_tokens is None or max_tokens > cap:
                    max_tokens, capped = cap, True
        for limit, subject in applied:
            if limit.metric == "requests":
                self._window(limit, subject, now).append((now, 1))
        return Verdict(True, None, max_tokens, None, capped, request=request)

    def record(
        self,
        verdict_or_request: Verdict | Mapping[str, Any],
        now: dt.datetime,
        tokens: int | None = None,
        spend: Decimal | None = None,
    ) -> None:
        """Add a finished call's tokens (input + output) and spend to the windows and budgets
        it falls under. A refused verdict records nothing; unknown tokens or spend add nothing."""
        if isinstance(verdict_or_request, Verdict):
            if not verdict_or_request.allowed:
                return
            request = verdict_or_request.request
        else:
            request = verdict_or_request
        now = _utc(now)
        for limit in self.limits:
            amount = (
                tokens if limit.metric == "tokens" else spend if limit.metric == "spend" else None
            )
            subject = limit.subject_of(request)
            if amount is None or subject is None:
                continue
            if limit.window in SLIDING_SECONDS:
                self._window(limit, subject, now).append((now, amount))
            elif limit.window in CALENDAR_WINDOWS:
                key = _calendar_key(limit.window, now)
                total = self._budget(limit, subject, now) + amount
                self._budgets[(limit.id, subject)] = (key, total)


def _fail(message: str) -> AdvisorError:
    return AdvisorError(message, hint="export it again with `advisor export guardrails`")


def _value(raw: Any, unit: str, where: str) -> int | Decimal:
    if unit == "USD":
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise _fail(f"{where}.value: a USD value is a decimal string, got {raw!r}")
        try:
            money = Decimal(str(raw))
        except InvalidOperation:
            raise _fail(f"{where}.value: not a decimal amount: {raw!r}") from None
        if not money.is_finite() or money < 0:
            raise _fail(f"{where}.value: not a decimal amount: {raw!r}")
        return money
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise _fail(f"{where}.value: a {unit} value is a whole number, got {raw!r}")
    return raw


def _limit(item: Any, where: str) -> GuardLimit:
    if not isinstance(item, Mapping):
        raise _fail(f"{where}: expected a mapping")
    try:
        lim = GuardLimit(
            id=str(item["id"]),
            scope=item["scope"],
            subject=str(item["subject"]),
            metric=item["metric"],
            window=item["window"],
            value=_value(item["value"], str(item["unit"]), where),
            action=item.get("action", "refuse"),
        )
    except KeyError as exc:
        raise _fail(f"{where}: missing field {exc.args[0]!r}") from None
    windows = {"request", *SLIDING_SECONDS, *CALENDAR_WINDOWS}
    if lim.scope not in SCOPES or lim.metric not in METRICS or lim.window not in windows:
        raise _fail(f"{where}: unknown scope, metric or window in limit {lim.id!r}")
    if (lim.window == "request") != (lim.metric in ("input_tokens", "max_tokens")):
        raise _fail(f"{where}: {lim.metric} does not go with window {lim.window!r}")
    if (lim.metric == "spend") != (item["unit"] == "USD") or lim.action not in ("refuse", "cap"):
        raise _fail(f"{where}: unit or action does not fit limit {lim.id!r}")
    if lim.metric == "requests" and lim.window not in SLIDING_SECONDS:
        raise _fail(f"{where}: requests are limited per sliding window, not per {lim.window}")
    if lim.window in SLIDING_SECONDS and lim.metric == "spend":
        raise _fail(f"{where}: spend is budgeted per calendar day or month, not per {lim.window}")
    return lim


def load_guardrails(source: str | Path | Mapping[str, Any]) -> Guard:
    """A Guard from the generic export: its YAML (or JSON) file, or the same document as a dict.
    Limits listed under `not_set` (too little history to set them) are ignored."""
    if isinstance(source, Mapping):
        spec: Any = source
    else:
        text = Path(source).read_text(encoding="utf-8")
        if str(source).endswith(".json"):
            import json

            spec = json.loads(text)
        else:
            import yaml  # PyYAML only, loaded lazily so JSON users need nothing else

            spec = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(spec, Mapping) or spec.get("advisor_guardrails") != GUARDRAILS_VERSION:
        raise _fail(f"not an advisor guardrails file (version {GUARDRAILS_VERSION})")
    items = spec.get("limits") or []
    if not isinstance(items, list):
        raise _fail("limits: expected a list")
    return Guard([_limit(item, f"limits[{i}]") for i, item in enumerate(items)])
