"""Langfuse's observations, exported from its tables (CSV, JSON, JSON lines), read through its
API (camelCase keys) or written by its blob-storage export (snake_case keys).

Only generations (and embeddings) are model calls; spans and events of the same export are
left out. Token convention: `usageDetails` is a map of usage types that add up, as Langfuse's
own UI adds them: every type naming `input` is part of the prompt (`input`, which leaves the
cached part out, `input_cached_tokens`, `cache_read_input_tokens`,
`cache_creation_input_tokens`, ...), every type naming `output` part of the completion.
`costDetails.total` is Langfuse's cost of the call (ingested, or inferred from its price
table): the logged cost.
"""

from __future__ import annotations

from advisor.ingest.export_sql import Spec, at, first, millis_between, text

NAME = "langfuse"
SIGNATURES = {
    NAME: (
        {"id", "traceId", "startTime", "usageDetails"},
        {"id", "trace_id", "start_time", "usage_details"},
        {"id", "traceId", "startTime", "promptTokens"},
    )
}

_USAGE = first(at("usageDetails"), at("usage_details"))
_MAP = f"TRY_CAST({_USAGE} AS MAP(VARCHAR, DOUBLE))"


def _sum(pattern: str) -> str:
    """The sum of the usage types whose name matches `pattern`, as text; NULL for none."""
    picked = f"list_filter(map_entries({_MAP}), lambda e: regexp_matches(e.key, {pattern!r}, 'i'))"
    return f"CAST(list_sum(list_transform({picked}, lambda e: e.value)) AS VARCHAR)"


def _both(camel: str, snake: str, *rest: str) -> str:
    return first(text(camel, *rest), text(snake, *rest))


_INPUT = at("input")
_OUTPUT = at("output")
_PARAMS = ("modelParameters", "model_parameters")

SPEC = Spec(
    name=NAME,
    keep=f"coalesce(upper({text('type')}), 'GENERATION') IN ('GENERATION', 'EMBEDDING')",
    raw={
        "ts": _both("startTime", "start_time"),
        "prompt": first(_sum("input"), text("promptTokens"), text("usage", "input")),
        "completion": first(_sum("output"), text("completionTokens"), text("usage", "output")),
        "cache_read": _sum("cache_read|cached"),
        "cache_write": _sum("cache_creation|cache_write"),
        "reasoning": _sum("reasoning"),
        "latency_ms": millis_between(
            _both("startTime", "start_time"), _both("endTime", "end_time")
        ),
        "ttft_ms": millis_between(
            _both("startTime", "start_time"),
            _both("completionStartTime", "completion_start_time"),
        ),
        "logged_cost": first(
            _both("costDetails", "cost_details", "total"),
            _both("totalCost", "total_cost"),
            text("calculatedTotalCost"),
        ),
        "max_tokens": first(
            *(
                text(p, k)
                for p in _PARAMS
                for k in ("max_tokens", "maxTokens", "max_completion_tokens")
            )
        ),
        "temperature": first(*(text(p, "temperature") for p in _PARAMS)),
    },
    labels={
        "ts": "startTime",
        "prompt": "usageDetails",
        "completion": "usageDetails",
        "cache_read": "usageDetails",
        "cache_write": "usageDetails",
        "reasoning": "usageDetails",
        "latency_ms": "endTime",
        "ttft_ms": "completionStartTime",
        "logged_cost": "costDetails.total",
        "max_tokens": "modelParameters.max_tokens",
        "temperature": "modelParameters.temperature",
    },
    text={
        "logged_id": text("id"),
        "model": first(text("model"), text("provided_model_name"), text("providedModelName")),
        "user_id": first(_both("userId", "user_id"), text("metadata", "user_id")),
        "session_id": _both("sessionId", "session_id"),
        "feature": first(_both("traceName", "trace_name"), text("name")),
        "stream": first(*(text(p, "stream") for p in _PARAMS)),
    },
    messages=f"""CASE json_type({_INPUT})
        WHEN 'ARRAY' THEN {_INPUT}
        WHEN 'OBJECT' THEN CASE WHEN json_type({_INPUT}->'$.messages') = 'ARRAY'
                                THEN {_INPUT}->'$.messages'
                                ELSE json_array(json_object('role', 'user', 'content',
                                                            CAST({_INPUT} AS VARCHAR))) END
        WHEN 'VARCHAR' THEN json_array(json_object('role', 'user', 'content', {_INPUT}->>'$'))
      END""",
    response=f"""CASE json_type({_OUTPUT})
        WHEN 'OBJECT' THEN coalesce({_OUTPUT}->>'$.content',
                                    {_OUTPUT}->>'$.choices[0].message.content',
                                    CAST({_OUTPUT} AS VARCHAR))
        WHEN 'NULL' THEN NULL
        ELSE {_OUTPUT}->>'$' END""",
    status=f"CASE WHEN upper({text('level')}) = 'ERROR' THEN 'error' ELSE 'ok' END",
    errors=[
        f"""WHEN json_type({_USAGE}) = 'OBJECT' AND {_MAP} IS NULL
              THEN 'usageDetails|expected a map of usage types to token counts'"""
    ],
)
SPECS = {NAME: SPEC}
