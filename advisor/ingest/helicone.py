"""Helicone's request exports (`npx @helicone/export`, CSV, JSON or JSON lines; or the records of
its request query API): one record per request, with the provider's request and response bodies
when exported with `--include-body`.

Token convention, as Helicone's cost code (packages/cost, `costOfPrompt`) reads its columns:
`prompt_tokens` are the fresh, uncached prompt tokens, and `prompt_cache_read_tokens` and
`prompt_cache_write_tokens` come on top; `reasoning_tokens`, where present, come on top of
`completion_tokens` (its query sums the three into `total_tokens`). `cost` (`cost_usd` in some
CSV exports) is Helicone's price of the request in USD: the logged cost.
"""

from __future__ import annotations

from advisor.ingest.export_sql import Spec, at, first, lit, text

NAME = "helicone"
SIGNATURES = {
    NAME: ({"request_created_at", "response_id"}, {"request_created_at", "request_id"}),
}

_BODY = at("request_body")
_RESPONSE = at("response_body")
_PROPERTIES = (
    f"TRY_CAST({first(at('request_properties'), at('properties'))} AS MAP(VARCHAR, VARCHAR))"
)


def _property(*names: str) -> str:
    """A custom property by name, whatever its case (Helicone-Property-<Name> headers)."""
    wanted = ", ".join(lit(n) for n in names)
    return f"list_filter(map_entries({_PROPERTIES}), lambda e: lower(e.key) IN ({wanted}))[1].value"


SPEC = Spec(
    name=NAME,
    raw={
        "ts": text("request_created_at"),
        "prompt": text("prompt_tokens"),
        "completion": text("completion_tokens"),
        "cache_read": text("prompt_cache_read_tokens"),
        "cache_write": text("prompt_cache_write_tokens"),
        "reasoning": text("reasoning_tokens"),
        "latency_ms": first(text("latency"), text("delay_ms")),
        "ttft_ms": text("time_to_first_token"),
        "logged_cost": first(text("cost"), text("cost_usd"), text("costUSD")),
        "max_tokens": first(f"{_BODY}->>'$.max_completion_tokens'", f"{_BODY}->>'$.max_tokens'"),
        "temperature": f"{_BODY}->>'$.temperature'",
    },
    labels={
        "ts": "request_created_at",
        "prompt": "prompt_tokens",
        "completion": "completion_tokens",
        "cache_read": "prompt_cache_read_tokens",
        "cache_write": "prompt_cache_write_tokens",
        "reasoning": "reasoning_tokens",
        "latency_ms": "latency",
        "ttft_ms": "time_to_first_token",
        "logged_cost": "cost",
        "max_tokens": "request_body.max_tokens",
        "temperature": "request_body.temperature",
    },
    text={
        "logged_id": first(text("request_id"), text("response_id")),
        "model": first(
            text("model"),
            text("request_model"),
            f"nullif({_BODY}->>'$.model', '')",
            text("response_model"),
        ),
        "response_model": first(text("response_model"), f"{_RESPONSE}->>'$.model'"),
        "provider": text("provider"),
        "user_id": first(text("request_user_id"), text("user_id")),
        "feature": _property("feature", "helicone-property-feature"),
        "session_id": _property("helicone-session-id"),
        "finish_reason": first(
            f"{_RESPONSE}->>'$.choices[0].finish_reason'", f"{_RESPONSE}->>'$.stop_reason'"
        ),
        "stream": f"{_BODY}->>'$.stream'",
        "service_tier": f"{_BODY}->>'$.service_tier'",
    },
    messages=f"CASE WHEN json_type({_BODY}->'$.messages') = 'ARRAY' THEN {_BODY}->'$.messages' END",
    system=f"{_BODY}->>'$.system'",
    response=first(f"{_RESPONSE}->>'$.choices[0].message.content'", f"{_RESPONSE}->>'$.content'"),
    status=f"""CASE WHEN TRY_CAST({first(text("response_status"), text("status"))} AS INTEGER)
                   NOT BETWEEN 200 AND 299 THEN 'error' ELSE 'ok' END""",
    cache_on_top=True,
    reasoning_on_top=True,
)
SPECS = {NAME: SPEC}
