"""`advisor export guardrails`: the derived limits as something a gateway can enforce.

Four formats from one Guardrails (saved in the store by `advisor analyze`):

- generic: advisor's own YAML (advisor.guardrails.generic), loaded by the runtime `advisor.guard`.
- litellm: the LiteLLM proxy config.yaml part. Global spend per day -> `litellm_settings.max_budget`
  + `budget_duration`; global requests/tokens per minute -> each deployment's `rpm`/`tpm`, enforced
  by `router_settings.optional_pre_call_checks: [enforce_model_rate_limits]`; the per-end-user
  limits -> a default budget (`litellm_settings.max_end_user_budget_id`).
- litellm-api: the JSON bodies of the proxy's management endpoints, to POST once: `/budget/new`
  (that default budget), `/customer/new` per end user, `/user/new` per internal user (the
  alternative when each user calls with a key of their own), `/team/new` + `/key/generate` per
  account. Every field is one LiteLLM's request models declare (checked by the tests).
- helicone: one `Helicone-RateLimit-Policy` header value per limit Helicone can express.

A limit no setting enforces (per-feature request caps, hourly rates, ...) is listed with the reason
instead of being given an invented key; a limit too thin to set is listed without a value.
Names from logs go through yaml.safe_dump or json.dumps only; they never enter a header value or
a comment, and an id LiteLLM would refuse or alter is skipped and listed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import duckdb
import yaml

from advisor import __version__, baseline
from advisor.errors import AdvisorError
from advisor.export.router import litellm_params
from advisor.guardrails.generic import count_value, generic_document
from advisor.guardrails.models import Guardrails, Limit
from advisor.guardrails.store import load_guardrails
from advisor.money import to_json

Format = Literal["generic", "litellm", "litellm-api", "helicone"]
FORMATS: tuple[Format, ...] = ("generic", "litellm", "litellm-api", "helicone")

# The default budget every end user without one of their own rides (LiteLLM: budget_id).
END_USER_BUDGET_ID = "advisor-end-user-default"


@dataclass(frozen=True)
class Entities:
    """The ids per-entity bodies are written for, from the store (unredacted, sorted).

    `known` is False when the guardrails come from analysis.json: its ids are masked, so no
    per-entity body is written."""

    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    models: tuple[tuple[str, str | None], ...] = ()  # (model, provider)
    known: bool = False


@dataclass(frozen=True)
class GuardrailSource:
    guardrails: Guardrails
    period_start: str | None
    period_end: str | None
    entities: Entities = field(default_factory=Entities)


def entities(con: duckdb.DuckDBPyConnection) -> Entities:
    def ids(column: str) -> tuple[str, ...]:
        rows = con.execute(
            f"SELECT DISTINCT {column} FROM requests WHERE {column} IS NOT NULL ORDER BY 1"
        ).fetchall()
        return tuple(str(r[0]) for r in rows)

    models = con.execute(
        """SELECT model, any_value(provider ORDER BY provider NULLS LAST) FROM requests
           WHERE model IS NOT NULL GROUP BY model ORDER BY model"""
    ).fetchall()
    return Entities(
        users=ids("user_id"),
        accounts=ids("account_id"),
        models=tuple((str(m), None if p is None else str(p)) for m, p in models),
        known=True,
    )


def guardrail_source(con: duckdb.DuckDBPyConnection) -> GuardrailSource:
    """What the exports are rendered from: the store's saved guardrails, period and ids."""
    guardrails = load_guardrails(con)
    if guardrails is None:
        raise AdvisorError(
            "this store holds no guardrails", hint="run `advisor analyze` on it first"
        )
    period = baseline.build_period(con)
    return GuardrailSource(guardrails, period.start, period.end, entities(con))


def export_guardrails(con: duckdb.DuckDBPyConnection, fmt: Format = "generic") -> str:
    return render_guardrails(guardrail_source(con), fmt)


def render_guardrails(source: GuardrailSource, fmt: Format) -> str:
    if fmt == "generic":
        return _header(source, "generic", _GENERIC_NOTE) + _yaml(
            generic_document(source.guardrails, source.period_start, source.period_end)
        )
    if fmt == "litellm":
        return litellm_config_text(source)
    if fmt == "litellm-api":
        return litellm_requests_text(litellm_requests(source))
    if fmt == "helicone":
        return helicone_text(source)
    raise AdvisorError(f"unknown guardrails format {fmt!r}", hint="formats: " + ", ".join(FORMATS))


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _comment(lines: Iterable[str]) -> str:
    """YAML comment lines; control characters (a newline above all) cannot end the comment."""
    return "".join("# " + _UNPRINTABLE.sub(" ", line) + "\n" for line in lines)


_GENERIC_NOTE = [
    "Load it with advisor.guard.load_guardrails(path); not_set lists the limits the history",
    "was too thin to set (no value: the runtime ignores them).",
]


def _header(source: GuardrailSource, fmt: str, note: list[str]) -> str:
    start, end = source.period_start or "?", source.period_end or "?"
    return _comment(
        [
            f"Guardrails written by `advisor export guardrails --format {fmt}` "
            f"(advisor {__version__}),",
            f"derived from the requests logged {start} .. {end} and back-tested on them.",
            *note,
        ]
    )


# ---------------------------------------------------------------- LiteLLM


# (scope, metric, window) -> (where, field) for the rate limits LiteLLM counts. Budgets (spend
# per 1d / 1mo) are handled apart: several limits may share one budget slot.
_LITELLM_RATES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("global", "requests", "1m"): ("deployment", "rpm"),
    ("global", "tokens", "1m"): ("deployment", "tpm"),
    ("global", "requests", "1d"): ("deployment", "rpd"),
    ("global", "tokens", "1d"): ("deployment", "tpd"),
    ("user", "requests", "1m"): ("end_user", "rpm_limit"),
    ("user", "tokens", "1m"): ("end_user", "tpm_limit"),
    ("account", "requests", "1m"): ("account", "rpm_limit"),
    ("account", "tokens", "1m"): ("account", "tpm_limit"),
}
_NO_LITELLM = {
    "input_tokens": "a per-request cap for one feature: no LiteLLM setting enforces it per "
    "feature (model_info.max_input_tokens is the model's context window); enforce it with "
    "advisor.guard in the application, or a custom pre-call hook",
    "max_tokens": "a per-request cap for one feature: no LiteLLM setting caps max_tokens per "
    "feature; apply it with advisor.guard (verdict.max_tokens) in the application",
    "1h": "LiteLLM rate limits count per minute (rpm/tpm) or per day, not per hour",
    "tokens-1d": "tpd_limit on customers, users and teams counts batch submissions only "
    "(litellm/proxy/hooks/batch_rate_limiter.py), not chat traffic",
}


@dataclass
class _LiteLLMPlan:
    """Where each limit lands in LiteLLM, and why the others do not."""

    proxy_budget: tuple[str, Decimal] | None = None  # (budget_duration, max_budget)
    deployment: dict[str, int] = field(default_factory=dict)
    end_user: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    account_budgets: list[tuple[str, Decimal]] = field(default_factory=list)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (limit id, where)
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (limit id, why)
    not_set: list[tuple[str, str]] = field(default_factory=list)


def litellm_plan(guardrails: Guardrails) -> _LiteLLMPlan:
    plan = _LiteLLMPlan()
    for limit in guardrails.limits:
        if limit.status != "set" or limit.value is None:
            plan.not_set.append((limit.id, limit.reason or "too little history"))
        elif limit.metric == "spend" and limit.window in ("1d", "1mo"):
            _litellm_budget(plan, limit, limit.value)
        elif (limit.scope, limit.metric, limit.window) in _LITELLM_RATES:
            where, name = _LITELLM_RATES[(limit.scope, limit.metric, limit.window)]
            getattr(plan, where)[name] = count_value(limit.value)
            plan.mapped.append((limit.id, f"{where}.{name}"))
        else:
            key: str = limit.metric if limit.window == "request" else limit.window
            key = "tokens-1d" if (limit.metric, limit.window) == ("tokens", "1d") else key
            why = _NO_LITELLM.get(key, f"no LiteLLM setting limits {limit.metric} per {key}")
            plan.unmapped.append((limit.id, why))
    # per-feature limits share an id and a reason: say each once
    plan.mapped = list(dict.fromkeys(plan.mapped))
    plan.unmapped = list(dict.fromkeys(plan.unmapped))
    plan.not_set = list(dict.fromkeys(plan.not_set))
    return plan


def _litellm_budget(plan: _LiteLLMPlan, limit: Limit, value: Decimal) -> None:
    """A spend budget: LiteLLM resets `1d` at midnight and `1mo` on the 1st (litellm_settings
    .timezone, UTC by default), the calendar windows advisor back-tested."""
    window = limit.window
    if limit.scope == "account":  # teams hold several concurrent windows (budget_limits)
        taken = window in {w for w, _ in plan.account_budgets}
    elif limit.scope == "feature":
        taken = limit.subject in plan.tags
    elif limit.scope == "global":
        taken = plan.proxy_budget is not None
    else:
        taken = "budget_duration" in plan.end_user
    if taken:
        plan.unmapped.append(
            (limit.id, f"LiteLLM holds one such budget per {limit.scope}: the first one is set")
        )
    elif limit.scope == "account":
        plan.account_budgets.append((window, value))
        plan.mapped.append((limit.id, "/team/new budget"))
    elif limit.scope == "feature":  # tag budgets: the application tags requests with the feature
        plan.tags[limit.subject] = {"max_budget": float(value), "budget_duration": window}
        plan.mapped.append((limit.id, "litellm_settings.tag_budget_config (Enterprise)"))
    elif limit.scope == "global":
        plan.proxy_budget = (window, value)
        plan.mapped.append((limit.id, "litellm_settings.max_budget"))
    else:
        plan.end_user.update(max_budget=float(value), budget_duration=window)
        plan.mapped.append((limit.id, "end-user budget"))


def litellm_config(source: GuardrailSource) -> dict[str, Any]:
    """The config.yaml part: model_list (rpm/tpm), router_settings, litellm_settings."""
    plan = litellm_plan(source.guardrails)
    config: dict[str, Any] = {}
    if plan.deployment and source.entities.models:
        config["model_list"] = [
            {
                "model_name": model,
                "litellm_params": litellm_params(provider, model) | plan.deployment,
            }
            for model, provider in source.entities.models
        ]
    if plan.deployment:
        config["router_settings"] = {"optional_pre_call_checks": ["enforce_model_rate_limits"]}
    settings: dict[str, Any] = {}
    if plan.proxy_budget:
        settings["max_budget"] = float(plan.proxy_budget[1])
        settings["budget_duration"] = plan.proxy_budget[0]
    if plan.end_user:
        settings["max_end_user_budget_id"] = END_USER_BUDGET_ID
    if plan.tags:
        settings["tag_budget_config"] = dict(sorted(plan.tags.items()))
    if settings:
        config["litellm_settings"] = settings
    return config


def litellm_config_text(source: GuardrailSource) -> str:
    plan = litellm_plan(source.guardrails)
    note = [
        "LiteLLM proxy config.yaml settings: merge them into your config (the model_list entries",
        "add rpm/tpm to the deployments the logs used). The per-entity limits need the proxy's",
        "management API once: POST the bodies of `advisor export guardrails --format litellm-api`.",
        "LiteLLM counts rpm/tpm per deployment, in a 60 s window opened by the first request; the",
        "back-test counted the whole traffic in a sliding window. Budgets reset at midnight UTC",
        "(1d) and on the 1st (1mo) when litellm_settings.timezone is unset or UTC.",
        "router_settings.provider_budget_config is not used: no advisor limit is per provider.",
    ]
    if plan.end_user:
        note.append(
            "max_end_user_budget_id names the /budget/new body (litellm_settings"
            ".max_end_user_budget is read by no check in LiteLLM 1.110, checked against)."
        )
    if plan.deployment and not source.entities.models:
        note.append(
            "No model list (read from analysis.json): set on every deployment "
            + ", ".join(f"{k}: {v}" for k, v in plan.deployment.items())
        )
    note += [f"set: {limit_id} -> {where}" for limit_id, where in plan.mapped]
    note += [f"not in LiteLLM: {limit_id}: {why}" for limit_id, why in plan.unmapped]
    note += [f"not set (too little history): {limit_id}: {why}" for limit_id, why in plan.not_set]
    body = litellm_config(source)
    return _header(source, "litellm", note) + (_yaml(body) if body else "{}\n")


def _id_problem(value: str) -> str | None:
    """Why LiteLLM would refuse or alter an id (NewUserRequest strips it, refuses NUL)."""
    if not value.strip():
        return "blank"
    if value != value.strip():
        return "leading or trailing whitespace (LiteLLM strips it, so it would not match)"
    if "\x00" in value:
        return "contains NUL"
    return None


_KEY_ALIAS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_\-.@]{0,200}[A-Za-z0-9])?", re.ASCII)


def _key_alias(account: str) -> str:
    """A key alias LiteLLM's strictest alias pattern accepts; a hash for any other id."""
    if _KEY_ALIAS.fullmatch(account) and ".." not in account:
        return f"advisor-{account}"
    return "advisor-account-" + hashlib.sha256(account.encode()).hexdigest()[:16]


def litellm_requests(source: GuardrailSource) -> dict[str, Any]:
    """The management-API bodies, in the order to POST them, grouped by how the app calls."""
    plan = litellm_plan(source.guardrails)
    ents = source.entities
    requests: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def add(group: str, path: str, body: dict[str, Any]) -> None:
        requests.append({"group": group, "method": "POST", "path": path, "body": body})

    def usable(path: str, value: str) -> bool:
        problem = _id_problem(value)
        if problem:
            skipped.append({"path": path, "id": value, "reason": problem})
        return problem is None

    if plan.end_user:
        add("end-users", "/budget/new", {"budget_id": END_USER_BUDGET_ID, **plan.end_user})
        for user in ents.users:
            if usable("/customer/new", user):
                add("end-users", "/customer/new", {"user_id": user, **plan.end_user})
        for user in ents.users:
            if usable("/user/new", user):
                add("internal-users", "/user/new", {"user_id": user, **plan.end_user})
    team = dict(plan.account)
    if len(plan.account_budgets) == 1:
        team["budget_duration"], budget = plan.account_budgets[0]
        team["max_budget"] = float(budget)
    elif plan.account_budgets:
        team["budget_limits"] = [
            {"budget_duration": w, "max_budget": float(v)} for w, v in plan.account_budgets
        ]
    if team:
        for account in ents.accounts:
            if not usable("/team/new", account):
                continue
            add("accounts", "/team/new", {"team_id": account, "team_alias": account, **team})
            add(
                "accounts",
                "/key/generate",
                {
                    "team_id": account,
                    "key_alias": _key_alias(account),
                    "metadata": {"advisor_account": account},
                },
            )
    notes = [
        "POST each body to the proxy with the master key, e.g. jq -c '.requests[]' FILE | while "
        'read -r r; do curl -sS -X POST "$PROXY$(jq -r .path <<<"$r")" -H "Authorization: '
        "Bearer $LITELLM_MASTER_KEY\" -H 'Content-Type: application/json' -d \"$(jq -c .body "
        '<<<"$r")"; done',
        "end-users: when the application sends its user ids in the `user` field (customers); "
        "internal-users instead when each user calls with a key of their own; accounts: one "
        "team per account, whose key the account's requests use.",
    ]
    if not ents.known:
        notes.append(
            "read from analysis.json, whose ids are redacted: no per-user or per-account body; "
            "export from the store (--db) for them"
        )
    return {
        "advisor_litellm_requests": 1,
        "generated_by": f"advisor {__version__}",
        "period": {"start": source.period_start, "end": source.period_end},
        "notes": notes,
        "skipped": skipped,
        "not_in_litellm": [{"id": i, "reason": r} for i, r in plan.unmapped],
        "not_set": [{"id": i, "reason": r} for i, r in plan.not_set],
        "requests": requests,
    }


def litellm_requests_text(doc: dict[str, Any]) -> str:
    """The document as JSON with one request per line: readable, and quick for 100k users
    (json's indenting encoder is pure Python; a compact dump per request is not)."""
    head = json.dumps({k: v for k, v in doc.items() if k != "requests"}, indent=2,
                      ensure_ascii=False)  # fmt: skip
    lines = ",\n".join("    " + json.dumps(r, ensure_ascii=False) for r in doc["requests"])
    body = f"[\n{lines}\n  ]" if lines else "[]"
    return head[: -len("\n}")] + f',\n  "requests": {body}\n}}\n'


# ---------------------------------------------------------------- Helicone

# Helicone's own parser (worker/src/lib/rate-limit/policyParser.ts): one policy per header,
# quota > 0, window 60 s .. 1 year, unit request|cents, segment `user` or a property name.
HELICONE_POLICY = re.compile(
    r"(\d+(?:\.\d+)?);w=(\d+)(?:;u=(request|cents))?(?:;s=([\w-]+))?", re.ASCII
)
_HELICONE_WINDOW = {"1m": 60, "1h": 3600, "1d": 86400, "1mo": 30 * 86400}
# scope -> (segment, the header that carries the entity on each request)
_HELICONE_SEGMENT: dict[str, tuple[str | None, str | None]] = {
    "global": (None, None),
    "user": ("user", "Helicone-User-Id"),
    "account": ("account", "Helicone-Property-Account"),
    "feature": ("feature", "Helicone-Property-Feature"),
}


def helicone_policy(quota: Decimal, seconds: int, unit: str, segment: str | None) -> str:
    """One Helicone-RateLimit-Policy value, refused unless Helicone's parser would read exactly
    these fields (a `;`, `,` or line break can never add one)."""
    text = f"{to_json(quota)};w={seconds}" + (";u=cents" if unit == "cents" else "")
    text += f";s={segment}" if segment else ""
    if not (
        HELICONE_POLICY.fullmatch(text)
        and text.isascii()
        and quota > 0
        and 60 <= seconds <= 31_536_000
    ):
        raise AdvisorError(f"not a valid Helicone rate-limit policy: {text!r}")
    return text


def _helicone_entry(limit: Limit, value: Decimal) -> dict[str, Any] | str:
    """The policy of one limit, or why Helicone cannot express it."""
    if limit.window == "request":
        return "a per-request cap: Helicone rate limits count requests or cents over a window"
    if limit.metric not in ("requests", "spend"):
        return f"Helicone counts requests or cents, not {limit.metric}"
    segment, carrier = _HELICONE_SEGMENT[limit.scope]
    cents = limit.metric == "spend"
    quota = value * 100 if cents else Decimal(count_value(value))
    entry: dict[str, Any] = {
        "id": limit.id,
        "header": "Helicone-RateLimit-Policy",
        "value": helicone_policy(
            quota, _HELICONE_WINDOW[limit.window], "cents" if cents else "request", segment
        ),
    }
    if carrier:
        entry["send_with"] = carrier
    if limit.scope == "feature":
        entry["only_for_feature"] = limit.subject
    if not limit.sliding and limit.window in ("1d", "1mo"):
        entry["note"] = (
            f"a rolling {_HELICONE_WINDOW[limit.window] // 86400}-day window in Helicone; "
            f"advisor back-tested a calendar {limit.window} (UTC)"
        )
    return entry


def helicone_document(source: GuardrailSource) -> dict[str, Any]:
    policies, unmapped, not_set = [], [], []
    for limit in source.guardrails.limits:
        if limit.status != "set" or limit.value is None:
            reason = limit.reason or "too little history"
            not_set.append({"id": limit.id, "subject": limit.subject, "reason": reason})
            continue
        entry = _helicone_entry(limit, limit.value)
        if isinstance(entry, str):
            if {"id": limit.id, "reason": entry} not in unmapped:  # per feature: say it once
                unmapped.append({"id": limit.id, "reason": entry})
        else:
            policies.append(entry)
    doc: dict[str, Any] = {
        "advisor_helicone_policies": 1,
        "period": {"start": source.period_start, "end": source.period_end},
        "policies": policies,
        "not_in_helicone": unmapped,
        "not_set": not_set,
    }
    if source.entities.known:
        unsendable = {
            "users": [u for u in source.entities.users if not _header_safe(u)],
            "accounts": [a for a in source.entities.accounts if not _header_safe(a)],
        }
        if any(unsendable.values()):
            doc["ids_not_sendable_in_a_header"] = unsendable
    return doc


def _header_safe(value: str) -> bool:
    """Printable ASCII only: what an HTTP client sends in a header value unchanged."""
    return all(" " <= c <= "~" for c in value)


def helicone_text(source: GuardrailSource) -> str:
    note = [
        "Helicone-RateLimit-Policy header values, one per limit Helicone can express. Helicone",
        "reads one policy per request: send the one that matters most for that request (advisor",
        "guard enforces all of them), with the header named in send_with carrying the entity.",
        "ids_not_sendable_in_a_header lists logged ids an HTTP header cannot carry unchanged.",
    ]
    return _header(source, "helicone", note) + _yaml(helicone_document(source))
