"""OpenTelemetry GenAI spans in OTLP JSON: what a collector's file exporter writes (one
ExportTraceServiceRequest per line) or a single exported document.

A span is one request where it is a model call: `gen_ai.operation.name` chat, text_completion or
generate_content, or no operation but a `gen_ai.request.model`. Agent, tool, workflow and
embeddings spans are skipped (an agent span's usage sums its model calls: counting it would count
them twice), as are spans of other instrumentations (HTTP, database) in the same export.

Token convention (semantic conventions, gen-ai spans): `gen_ai.usage.input_tokens` "SHOULD
include all types of input tokens, including cached tokens", and `gen_ai.usage.cache_read.
input_tokens` / `gen_ai.usage.cache_creation.input_tokens` "SHOULD be included in" it: the
canonical input_tokens is that value. An instrumentation that copied Anthropic's own
`input_tokens` (cache excluded) shows itself where input is below read + creation: there the
three are summed. Older attribute names (`gen_ai.system`, `gen_ai.usage.prompt_tokens` /
`completion_tokens`) and prompt text from span events (`gen_ai.client.inference.operation.
details`, the older `gen_ai.*.message` / `gen_ai.choice` events) or indexed `gen_ai.prompt.N.*`
attributes are read too. The user is `enduser.id` / `user.id`; the feature is a `feature`
attribute, else `gen_ai.agent.name`, else the resource's `service.name` (which service sent it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from advisor.ingest.load import LoadCounts
from advisor.ingest.records import INVALID_JSON, Record, json_lines, load_records, read_text

FORMAT = "otel_genai"
_MODEL_CALLS = ("chat", "text_completion", "generate_content")
# gen_ai.provider.name values -> the provider names advisor's price tables use
_PROVIDERS = {
    "aws.bedrock": "bedrock",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure_ai",
    "gcp.gemini": "gemini",
    "gcp.gen_ai": "gemini",
    "gcp.vertex_ai": "vertex_ai",
    "x_ai": "xai",
    "mistral_ai": "mistral",
    "ibm.watsonx.ai": "watsonx",
}
# envelope fields -> the attributes they come from, for quarantine reasons
FIELD_NAMES = {
    "timestamp": "startTimeUnixNano",
    "request.model": "gen_ai.request.model",
    "request.max_completion_tokens": "gen_ai.request.max_tokens",
    "request.temperature": "gen_ai.request.temperature",
    "latency_ms": "endTimeUnixNano",
    "response.usage.prompt_tokens": "gen_ai.usage.input_tokens",
    "response.usage.completion_tokens": "gen_ai.usage.output_tokens",
    "response.usage.prompt_tokens_details.cached_tokens": "gen_ai.usage.cache_read.input_tokens",
    "response.usage.completion_tokens_details.reasoning_tokens":
        "gen_ai.usage.reasoning.output_tokens",
    "response.usage.input_tokens": "gen_ai.usage.input_tokens",
    "response.usage.output_tokens": "gen_ai.usage.output_tokens",
    "response.usage.cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "response.usage.cache_creation_input_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "response.usage": "gen_ai.usage",
}  # fmt: skip
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(role|content)$")


def ingest_file(
    con: duckdb.DuckDBPyConnection, path: Path, model: str | None, progress: Any = None
) -> LoadCounts:
    """One OTLP JSON file (a document, or JSON lines of export requests) into the store."""
    return load_records(con, path, list(_records(path)), FORMAT, model, FIELD_NAMES, progress)


def _records(path: Path) -> Iterator[Record]:
    text = read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        yield from _export_records(document, 1, text)
        return
    for number, line, request in json_lines(text):
        if request is None:
            yield Record(number, line, error=("", INVALID_JSON))
        elif not isinstance(request, dict) or "resourceSpans" not in request:
            yield Record(number, line, error=("resourceSpans", "not an OTLP trace export"))
        else:
            yield from _export_records(request, number, None)


def _export_records(request: dict[str, Any], line: int, document: str | None) -> Iterator[Record]:
    """The model-call spans of one export request on `line`; in a multi-line `document`, each
    span's line is found from its spanId."""
    at = 0
    for resource_spans in _list(request.get("resourceSpans")):
        resource = _attributes(_dict(resource_spans.get("resource")).get("attributes"))
        scopes = _list(resource_spans.get("scopeSpans")) or _list(
            resource_spans.get("instrumentationLibrarySpans")  # OTLP before 0.15
        )
        for scope in scopes:
            for span in _list(scope.get("spans")):
                if not isinstance(span, dict):
                    continue
                attrs = _attributes(span.get("attributes"))
                if not _is_model_call(attrs):
                    continue
                span_line = line
                if document is not None:
                    found = document.find(json.dumps(str(span.get("spanId", ""))), at)
                    if found >= 0:
                        at = found
                        span_line = document.count("\n", 0, found) + 1
                yield _record(span, attrs, resource, span_line)


def _is_model_call(attrs: Mapping[str, Any]) -> bool:
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None:
        return operation in _MODEL_CALLS
    return "gen_ai.request.model" in attrs


def _record(
    span: dict[str, Any], attrs: dict[str, Any], resource: dict[str, Any], line: int
) -> Record:
    text = json.dumps(span, separators=(",", ":"))
    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    usage, reasoning = _usage(attrs)
    messages, output, finish = _texts(span, attrs)
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        finish = str(reasons[0])
    status = _dict(span.get("status")).get("code")
    failed = status in (2, "2", "STATUS_CODE_ERROR") or "error.type" in attrs
    provider = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    request: dict[str, Any] = {
        "id": attrs.get("gen_ai.response.id")
        or f"otel:{span.get('traceId', '')}:{span.get('spanId', '')}",
        "timestamp": _iso(start) if start is not None else span.get("startTimeUnixNano"),
        "provider": _PROVIDERS.get(str(provider), provider) if provider else None,
        "user": _first(attrs, resource, "enduser.id", "user.id"),
        "feature": _first(attrs, resource, "feature", "gen_ai.agent.name", "service.name"),
        "session_id": _first(attrs, resource, "gen_ai.conversation.id", "session.id"),
        "service_tier": _first(
            attrs, {}, "openai.response.service_tier", "gen_ai.openai.response.service_tier"
        ),
        "status": "error" if failed else "ok",
        "request": {
            "model": attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model"),
            "max_completion_tokens": attrs.get("gen_ai.request.max_tokens"),
            "temperature": attrs.get("gen_ai.request.temperature"),
            "messages": messages or None,
        },
        "response": {
            "model": attrs.get("gen_ai.response.model"),
            "choices": [{"message": {"content": output}, "finish_reason": finish}],
            "usage": usage,
        },
    }
    if start is not None and end is not None and end >= start:
        request["latency_ms"] = (end - start) / 1e6
    return Record(line, text, request=request, reasoning_tokens=reasoning)


def _usage(attrs: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """The span's usage as an envelope usage object, and its reasoning tokens where the object
    cannot carry them (Anthropic's shape, the one with cache writes)."""
    total = attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
    output = attrs.get("gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens"))
    read = attrs.get("gen_ai.usage.cache_read.input_tokens")
    write = attrs.get("gen_ai.usage.cache_creation.input_tokens")
    reasoning = attrs.get("gen_ai.usage.reasoning.output_tokens")
    if total is None and output is None:
        return None, None
    counts = (total, read or 0, write or 0)
    if not write or not all(type(v) is int for v in counts):
        usage: dict[str, Any] = {"prompt_tokens": total, "completion_tokens": output}
        if read is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": read}
        if reasoning is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        # an input below its cached part: Anthropic's input_tokens copied as is (cache on top)
        if type(total) is int and type(read) is int and total < read:
            usage["prompt_tokens"] = total + read
        return usage, None
    read = read or 0
    included = total >= read + write
    return {
        "input_tokens": total - read - write if included else total,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "output_tokens": output,
    }, reasoning if type(reasoning) is int else None


def _texts(
    span: Mapping[str, Any], attrs: Mapping[str, Any]
) -> tuple[list[dict[str, str]], str | None, str | None]:
    """Prompt messages, completion text and finish reason, from wherever the span has them."""
    details: dict[str, Any] = dict(attrs)
    messages: list[dict[str, str]] = []
    output: list[str] = []
    finish = None
    for event in _list(span.get("events")):
        name = event.get("name", "")
        event_attrs = _attributes(event.get("attributes"))
        if name == "gen_ai.client.inference.operation.details":
            details.update(event_attrs)
        elif name in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message",
                      "gen_ai.tool.message"):  # fmt: skip
            content = event_attrs.get("content", event_attrs.get("gen_ai.prompt"))
            messages.append({"role": name.split(".")[1], "content": _plain(content)})
        elif name == "gen_ai.choice":
            message = _json(event_attrs.get("message"))
            content = message.get("content") if isinstance(message, dict) else None
            output.append(_plain(content if content is not None else event_attrs.get("content")))
            finish = event_attrs.get("finish_reason", finish)
        elif name == "gen_ai.content.prompt":
            messages.append({"role": "user", "content": _plain(event_attrs.get("gen_ai.prompt"))})
        elif name == "gen_ai.content.completion":
            output.append(_plain(event_attrs.get("gen_ai.completion")))
    system = _json(details.get("gen_ai.system_instructions"))
    if isinstance(system, list):
        messages.insert(0, {"role": "system", "content": _parts_text(system)})
    for message in _list(_json(details.get("gen_ai.input.messages"))):
        messages.append({"role": str(message.get("role", "user")), "content": _parts(message)})
    for message in _list(_json(details.get("gen_ai.output.messages"))):
        output.append(_parts(message))
        finish = message.get("finish_reason", finish)
    indexed: dict[tuple[str, int], dict[str, str]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match:
            indexed.setdefault((match[1], int(match[2])), {})[match[3]] = _plain(value)
    for (kind, _), part in sorted(indexed.items()):
        if kind == "prompt":
            messages.append({"role": part.get("role", "user"), "content": part.get("content", "")})
        else:
            output.append(part.get("content", ""))
    return messages, "".join(output) if output else None, finish


def _parts(message: Mapping[str, Any]) -> str:
    """A semconv message's text: its parts (text content, tool calls as their JSON)."""
    if "parts" in message:
        return _parts_text(_list(message["parts"]))
    return _plain(message.get("content"))


def _parts_text(parts: list[Any]) -> str:
    return "".join(
        str(p.get("content", "")) if p.get("type") == "text" else json.dumps(p, sort_keys=True)
        for p in parts
        if isinstance(p, dict)
    )


def _plain(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _json(value: Any) -> Any:
    """An attribute holding JSON text (the structured attributes are often sent as strings)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def _first(attrs: Mapping[str, Any], resource: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        for where in (attrs, resource):
            if where.get(key) not in (None, ""):
                return where[key]
    return None


def _attributes(items: Any) -> dict[str, Any]:
    """OTLP key/value attributes as a dict of plain values."""
    return {
        str(item["key"]): _value(item.get("value"))
        for item in _list(items)
        if isinstance(item, dict) and "key" in item
    }


def _value(value: Any) -> Any:
    """An OTLP AnyValue: int64 comes as a decimal string in OTLP JSON; a value that does not
    read as its type is kept as it came, for the envelope's checks to name."""
    if not isinstance(value, dict):
        return value
    if "intValue" in value:
        raw = value["intValue"]
        try:
            return int(raw)
        except (TypeError, ValueError):
            return raw
    if "arrayValue" in value:
        return [_value(v) for v in _list(_dict(value["arrayValue"]).get("values"))]
    if "kvlistValue" in value:
        return _attributes(_dict(value["kvlistValue"]).get("values"))
    for kind in ("stringValue", "doubleValue", "boolValue", "bytesValue"):
        if kind in value:
            return value[kind]
    return None


def _nanos(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _iso(nanos: int) -> str | int:
    """Unix nanoseconds as an ISO 8601 UTC time; a value no datetime holds as it came."""
    try:
        moment = datetime.fromtimestamp(nanos // 1000 / 1e6, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return nanos
    return moment.isoformat().replace("+00:00", "Z")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
