"""Small builders of log lines for tests, and the guard of tests that read ../shared."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TIKTOKEN_CACHE = SHARED / "tiktoken-cache"
# Set by .ci/run where ../shared is laid beside the repo: a test that needs it then fails instead
# of skipping, so CI never passes with the real-data checks silently left out.
REQUIRE_SHARED = "ADVISOR_REQUIRE_SHARED"


def missing_shared(what: str) -> NoReturn:
    """Skip a test whose data is not beside this clone, naming it; fail under CI's guard."""
    message = f"needs {what}, absent here (../shared beside the repo; see README, Development)"
    if os.environ.get(REQUIRE_SHARED):
        pytest.fail(f"{message}, but {REQUIRE_SHARED} is set")
    pytest.skip(message)


def require_shared(path: Path, what: str) -> Path:
    """`path` under ../shared, or a skip (a failure under CI's guard) naming what is missing."""
    if not path.exists():
        missing_shared(f"{what} at {path}")
    return path


def require_tiktoken() -> None:
    """Exact counts need o200k_base offline: ../shared/tiktoken-cache as TIKTOKEN_CACHE_DIR."""
    from advisor import tokens

    tokens.get_encoding.cache_clear()
    if not tokens.encoding_available("o200k_base"):
        missing_shared(f"tiktoken's o200k_base encoding in {TIKTOKEN_CACHE}")
    tokens.get_encoding.cache_clear()


def openai_line(
    rid: str = "r1",
    *,
    model: str = "gpt-4o",
    ts: Any = "2026-10-01T12:00:00Z",
    prompt: int | None = 1000,
    completion: int = 200,
    cached: int | None = None,
    reasoning: int | None = None,
    messages: list[dict[str, Any]] | None = None,
    response_text: str = "Hello!",
    **envelope: Any,
) -> dict[str, Any]:
    usage: dict[str, Any] | None = None
    if prompt is not None:
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        if reasoning is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    response: dict[str, Any] = {
        "id": f"chatcmpl-{rid}",
        "choices": [
            {"message": {"role": "assistant", "content": response_text}, "finish_reason": "stop"}
        ],
    }
    if usage is not None:
        response["usage"] = usage
    return {
        "id": rid,
        "timestamp": ts,
        "provider": "openai",
        "request": {
            "model": model,
            "messages": messages
            or [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hi there"},
            ],
        },
        "response": response,
        **envelope,
    }


def anthropic_line(
    rid: str = "a1",
    *,
    model: str = "claude-sonnet-4-5",
    input_tokens: int = 100,
    output_tokens: int = 50,
    cache_read: int | None = None,
    cache_write: int | None = None,
    cache_write_1h: int | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    if cache_write_1h is not None:
        usage["cache_creation"] = {
            "ephemeral_1h_input_tokens": cache_write_1h,
            "ephemeral_5m_input_tokens": (cache_write or 0) - cache_write_1h,
        }
    return {
        "id": rid,
        "timestamp": "2026-10-01T12:00:00Z",
        "provider": "anthropic",
        "request": {
            "model": model,
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hey"}]}],
            "max_tokens": 256,
        },
        "response": {
            "id": f"msg_{rid}",
            "type": "message",
            "content": [{"type": "text", "text": "Yo"}],
            "stop_reason": "end_turn",
            "usage": usage,
        },
        **envelope,
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows (dicts as JSON, str/bytes verbatim) one per line."""
    with path.open("wb") as fh:
        for row in rows:
            if isinstance(row, bytes):
                fh.write(row + b"\n")
            elif isinstance(row, str):
                fh.write(row.encode() + b"\n")
            else:
                fh.write(json.dumps(row).encode() + b"\n")
    return path


def store_snapshot(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of a store, in a stable order (for comparing two ingests)."""
    tables = {
        "requests": "SELECT * EXCLUDE (source_format) FROM requests ORDER BY request_id",
        "messages": "SELECT * FROM messages ORDER BY request_id, position",
        "texts": "SELECT * FROM texts ORDER BY text_hash",
        "quarantine": "SELECT * FROM quarantine ORDER BY source_line",
    }
    return {name: con.execute(sql).fetchall() for name, sql in tables.items()}


def small_log(path: Path, prefix: str, n: int = 20) -> Path:
    """A small OpenAI log whose request ids start with `prefix` (distinct logs, distinct ids)."""
    rows = [openai_line(f"{prefix}{i}", ts=f"2026-10-01T12:{i % 60:02d}:00Z") for i in range(n)]
    return write_jsonl(path, rows)


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (hidden ones too) by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def requests_in(db: Path) -> int:
    """How many requests a store file holds (opened read-only, closed again)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


@dataclass
class Outcome:
    """A lever's standalone replay and findings, as plain data (money as decimal strings)."""

    state: str
    affected_requests: int
    details: dict[str, Any]
    risk: dict[str, Any]
    recommendations: list[dict[str, Any]]
    per_request: str | None


def run_standalone(
    lever: Any, ctx: Any, state: str = "state_base", out: str = "state_out"
) -> Outcome:
    """prepare, replay on `state` and describe, as `simulate` runs a lever first."""
    from advisor.levers.base import State

    lever.prepare(ctx)
    alone = lever.replay(ctx, State(state), out)
    found = lever.describe(ctx, State(state), alone)
    return Outcome(
        alone.state.table,
        alone.affected_requests,
        found.details.model_dump(mode="json"),
        found.risk.model_dump(mode="json"),
        [r.model_dump(mode="json") for r in found.recommendations],
        found.per_request,
    )


def run_chained(lever: Any, ctx: Any, state: str, out: str, *, prepare: bool = True) -> str:
    """A replay of `state` as `simulate` chains it (prepared first unless it already ran)."""
    from advisor.levers.base import State

    if prepare:
        lever.prepare(ctx)
    return str(lever.replay(ctx, State(state), out).state.table)
