"""LiteLLM's logs: the proxy's `LiteLLM_SpendLogs` table exported as CSV or JSON, and the
`StandardLoggingPayload` objects its logging callbacks write (JSON lines).

Token convention (LiteLLM normalises every provider to OpenAI's): `prompt_tokens` includes cache
reads and writes, which `metadata.usage_object` breaks out (`cache_read_input_tokens` or
`prompt_tokens_details.cached_tokens`, and `cache_creation_input_tokens`); reasoning is inside
`completion_tokens`. `spend` / `response_cost` is LiteLLM's own price of the call: the logged
cost. `messages` and `response` are `{}` unless the proxy stores prompts
(`store_prompts_in_spend_logs`): such rows carry token counts alone.
"""

from __future__ import annotations

from advisor.ingest.export_sql import Spec, at, first, millis_between, text

SPENDLOGS = "litellm_spendlogs"
PAYLOAD = "litellm_payload"
# Keys that name each format: all of one set among the first record's keys (or CSV header).
SIGNATURES = {
    SPENDLOGS: ({"request_id", "call_type", "spend", "startTime"},),
    PAYLOAD: ({"id", "call_type", "response_cost", "startTime"},),
}

_USAGE = ("metadata", "usage_object")
_KEY = ("metadata",)


def _spec(name: str, id_key: str, cost_key: str) -> Spec:
    response = at("response")
    return Spec(
        name=name,
        raw={
            "ts": text("startTime"),
            "prompt": text("prompt_tokens"),
            "completion": text("completion_tokens"),
            "cache_read": first(
                text(*_USAGE, "cache_read_input_tokens"),
                text(*_USAGE, "prompt_tokens_details", "cached_tokens"),
            ),
            "cache_write": text(*_USAGE, "cache_creation_input_tokens"),
            "reasoning": text(*_USAGE, "completion_tokens_details", "reasoning_tokens"),
            "latency_ms": millis_between(text("startTime"), text("endTime")),
            "ttft_ms": millis_between(text("startTime"), text("completionStartTime")),
            "logged_cost": text(cost_key),
            "max_tokens": first(
                text("model_parameters", "max_completion_tokens"),
                text("model_parameters", "max_tokens"),
            ),
            "temperature": text("model_parameters", "temperature"),
        },
        labels={
            "ts": "startTime",
            "prompt": "prompt_tokens",
            "completion": "completion_tokens",
            "cache_read": "metadata.usage_object.cache_read_input_tokens",
            "cache_write": "metadata.usage_object.cache_creation_input_tokens",
            "reasoning": "metadata.usage_object.completion_tokens_details.reasoning_tokens",
            "latency_ms": "endTime",
            "ttft_ms": "completionStartTime",
            "logged_cost": cost_key,
            "max_tokens": "model_parameters.max_tokens",
            "temperature": "model_parameters.temperature",
        },
        text={
            "logged_id": text(id_key),
            "model": first(text("model"), text("model_group")),
            "response_model": f"{response}->>'$.model'",
            "provider": text("custom_llm_provider"),
            "user_id": first(
                text("end_user"),
                text("user"),
                text(*_KEY, "user_api_key_end_user_id"),
                text(*_KEY, "user_api_key_user_id"),
            ),
            "account_id": first(
                text("team_id"),
                text(*_KEY, "user_api_key_team_alias"),
                text(*_KEY, "user_api_key_team_id"),
            ),
            # the first request tag, else the virtual key's alias (keys are often one per app)
            "feature": first(
                f"nullif({at('request_tags')}->>'$[0]', '')", text(*_KEY, "user_api_key_alias")
            ),
            "session_id": first(text("session_id"), text("trace_id")),
            "finish_reason": f"{response}->>'$.choices[0].finish_reason'",
            "stream": text("model_parameters", "stream"),
        },
        messages=f"CASE WHEN json_type({at('messages')}) = 'ARRAY' THEN {at('messages')} END",
        response=f"{response}->>'$.choices[0].message.content'",
        status=f"CASE WHEN lower({text('status')}) IN ('failure', 'error') THEN 'error' "
        "ELSE 'ok' END",
    )


SPECS = {
    SPENDLOGS: _spec(SPENDLOGS, "request_id", "spend"),
    PAYLOAD: _spec(PAYLOAD, "id", "response_cost"),
}
