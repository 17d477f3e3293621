"""OpenAI Batch API files: the input JSONL (`custom_id, method, url, body`) and the output JSONL
(`id, custom_id, response: {status_code, request_id, body}, error`), joined by `custom_id`.

The output file is the traffic: each line is a request the batch ran, with the model and usage
in its body, billed at batch rates (rows are stored with service_tier `batch`, so pricing uses
batch prices and the batching lever counts them as already batched). The prompt is in the input
file: an output file's input is the batch input file beside it (same folder) that holds every
`custom_id` of the output; custom_ids are only unique within a batch, so a folder of several
batches joins each output to its own input (two inputs that would both fit: the one whose name
shares the longest start with the output's, else none). Without its input an output is still
priced; only the levers that need prompt text skip it.

An input file alone is not traffic: nothing in it says the batch ran, nor what it cost. Its
lines are quarantined, saying that the output file is needed; nothing is estimated. Input lines
joined to an output are counted with the output; an input line whose custom_id no output beside
it has (expired, cancelled, or its error file not downloaded) is quarantined as not run.
A line the batch failed (no body, or an error status) is quarantined: failed batch requests are
not billed. `/v1/responses` bodies are read in Chat Completions terms (both count cached tokens
inside the input).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from advisor.ingest.files import LOG_SUFFIXES, head_bytes
from advisor.ingest.load import LoadCounts
from advisor.ingest.records import (
    INVALID_JSON,
    JsonLines,
    Record,
    json_lines,
    load_records,
    read_text,
)

FORMAT = "openai_batch"
INPUT_KEYS = ("custom_id", "method", "url", "body")
OUTPUT_KEYS = ("custom_id", "response", "error")
FIELD_NAMES = {
    "timestamp": "response.body.created",
    "request.model": "body.model",
    "response.usage": "response.body.usage",
    "response.usage.prompt_tokens": "response.body.usage.prompt_tokens",
    "response.usage.completion_tokens": "response.body.usage.completion_tokens",
}


def ingest_file(
    con: duckdb.DuckDBPyConnection, path: Path, model: str | None, progress: Any = None
) -> LoadCounts:
    """One Batch API input or output file into the store (see the module docstring)."""
    lines = _lines(path)
    first = next((v for _, _, v in lines if isinstance(v, dict)), {})
    if all(k in first for k in INPUT_KEYS):
        records = list(_input_records(path, lines))
    else:
        pair = _paired_input(path, {_cid(v) for _, _, v in lines} - {None})  # type: ignore[arg-type]
        records = list(_output_records(lines, pair[1] if pair else {}))
    return load_records(con, path, records, FORMAT, model, FIELD_NAMES, progress)


def _lines(path: Path) -> JsonLines:
    return json_lines(read_text(path))


def _cid(value: Any) -> str | None:
    cid = value.get("custom_id") if isinstance(value, dict) else None
    return cid if isinstance(cid, str) else None


def _first_keys(path: Path) -> set[str]:
    """Keys of a file's first line, if it is a JSON object."""
    try:
        first = head_bytes(path).lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
        value = json.loads(first)
    except (OSError, ValueError):
        return set()
    return set(value) if isinstance(value, dict) else set()


def _siblings(path: Path, keys: tuple[str, ...]) -> list[Path]:
    """Files beside `path` whose first line has `keys`: batch files of the same folder."""
    folder = path.parent
    names = sorted(n for n in os.listdir(folder) if n.endswith(LOG_SUFFIXES))
    return [
        folder / n
        for n in names
        if (folder / n) != path and (folder / n).is_file()
        and set(keys) <= _first_keys(folder / n)
    ]  # fmt: skip


def _common_start(a: str, b: str) -> int:
    """How many characters two file names share at their start (names, not path parts)."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _paired_input(path: Path, ids: set[str]) -> tuple[Path, dict[str, Any]] | None:
    """The input file beside an output file with these custom_ids, and its bodies by custom_id
    (module docstring); None where there is none, or no one best."""
    fits = []
    for candidate in _siblings(path, INPUT_KEYS):
        bodies = {c: v.get("body") for _, _, v in _lines(candidate) if (c := _cid(v)) is not None}
        if ids and ids <= bodies.keys():
            fits.append((_common_start(candidate.name, path.name), candidate, bodies))
    fits.sort(key=lambda f: -f[0])
    if not fits or (len(fits) > 1 and fits[0][0] == fits[1][0]):
        return None
    return fits[0][1], fits[0][2]


def _input_records(path: Path, lines: JsonLines) -> Iterator[Record]:
    ran: set[str] = set()
    for output in _siblings(path, OUTPUT_KEYS):
        ids: set[str] = {_cid(v) for _, _, v in _lines(output)} - {None}  # type: ignore[assignment]
        pair = _paired_input(output, ids)
        if pair is not None and pair[0] == path:
            ran |= ids
    for number, text, value in lines:
        cid = _cid(value)
        if cid in ran:
            continue  # counted with its output line
        if not ran:
            reason = (
                "a Batch API input line: what ran and what it cost is in the batch's output "
                "file; put it beside this one (same folder)"
            )
        else:
            reason = "no result in the batch output beside it: not run (expired or cancelled)"
        yield Record(number, text, error=("custom_id", reason))


def _output_records(lines: JsonLines, inputs: dict[str, Any]) -> Iterator[Record]:
    for number, text, value in lines:
        if not isinstance(value, dict):
            reason = INVALID_JSON if value is None else "expected a JSON object"
            yield Record(number, text, error=("", reason))
            continue
        if _cid(value) is None or "response" not in value:
            yield Record(number, text, error=("custom_id", "not a Batch API output line"))
            continue
        response = value.get("response")
        response = response if isinstance(response, dict) else {}
        body = response.get("body")
        body = body if isinstance(body, dict) else None
        status = response.get("status_code")
        error = value.get("error") or (body or {}).get("error")
        if body is None or error or (isinstance(status, int) and status >= 400):
            said = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            reason = f"failed in the batch ({code or f'status {status}'}: {said}): not billed"
            yield Record(number, text, error=("error", reason))
            continue
        request = inputs.get(_cid(value) or "")
        yield Record(number, text, request=_envelope(value, body, request))


def _envelope(line: dict[str, Any], body: dict[str, Any], request: Any) -> dict[str, Any]:
    """One output line (and its input body) as an envelope request at the batch tier."""
    request = dict(request) if isinstance(request, dict) else {"model": body.get("model")}
    if "input" in request and "messages" not in request:  # /v1/responses
        instructions = request.get("instructions")
        given = request["input"]
        messages = [{"role": "system", "content": instructions}] if instructions else []
        messages += (
            [{"role": "user", "content": given}] if isinstance(given, str)
            else [m for m in given if isinstance(m, dict)] if isinstance(given, list) else []
        )  # fmt: skip
        request = {**request, "messages": messages}
    return {
        "id": line.get("id") or body.get("id"),
        "timestamp": body.get("created", body.get("created_at")),
        "provider": "openai",
        "service_tier": "batch",
        "request": request,
        "response": _chat_response(body),
    }


def _chat_response(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses API or embeddings body in Chat Completions terms; a chat body as it is."""
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    if body.get("object") == "list" and usage is not None:  # embeddings: no output tokens
        return {**body, "usage": {**usage, "completion_tokens": 0}}
    if body.get("object") != "response" or usage is None:
        return body
    text = "".join(
        str(part.get("text", ""))
        for item in body.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
    )
    details = usage.get("input_tokens_details") or {}
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    chat_usage: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens")},
    }
    if reasoning is not None:
        chat_usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {
        "id": body.get("id"),
        "model": body.get("model"),
        "choices": [{"message": {"content": text}, "finish_reason": body.get("status")}],
        "usage": chat_usage,
    }
