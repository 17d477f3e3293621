"""Ingest: token conventions per format, quarantine with file/line/field, idempotency, tables."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import anthropic_line, openai_line, write_jsonl

from advisor.errors import InputError
from advisor.ingest import detect_format, ingest


def _row(con, rid: str) -> dict:
    cur = con.execute("SELECT * FROM requests WHERE request_id = ?", [rid])
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    assert row is not None, rid
    return dict(zip(names, row, strict=True))


def test_openai_cached_tokens_are_inside_prompt_tokens(con, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [openai_line(cached=600, reasoning=40)])
    ingest(con, [str(path)])
    row = _row(con, "r1")
    assert row["input_tokens"] == 1000
    assert row["cache_read_tokens"] == 600
    assert row["cache_write_tokens"] == 0
    assert row["output_tokens"] == 200
    assert row["reasoning_tokens"] == 40
    assert row["token_source"] == "logged"
    assert row["provider"] == "openai"


def test_anthropic_cache_tokens_are_on_top_of_input_tokens(con, tmp_path: Path) -> None:
    line = anthropic_line(input_tokens=100, cache_read=3000, cache_write=500, cache_write_1h=200)
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", [line]))])
    row = _row(con, "a1")
    assert row["input_tokens"] == 3600
    assert row["cache_read_tokens"] == 3000
    assert row["cache_write_tokens"] == 500
    assert row["cache_write_1h_tokens"] == 200
    assert row["output_tokens"] == 50
    assert row["max_tokens"] == 256


def test_forced_format_uses_that_convention(con, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [anthropic_line(cache_read=10)])
    report = ingest(con, [str(path)], fmt="openai")
    # Forced to OpenAI's convention, Anthropic usage is not token counts it knows: the row
    # falls back to counting its text rather than misreading the fields.
    assert report.totals.ingested == 1
    assert _row(con, "a1")["token_source"] is None


def test_gemini_native_usage(con, tmp_path: Path) -> None:
    line = openai_line("g1", model="gemini-2.5-flash", prompt=None)
    line["provider"] = "google"
    line["response"]["usageMetadata"] = {
        "promptTokenCount": 900, "cachedContentTokenCount": 300,
        "candidatesTokenCount": 50, "thoughtsTokenCount": 70,
    }  # fmt: skip
    ingest(con, [str(write_jsonl(tmp_path / "g.jsonl", [line]))])
    row = _row(con, "g1")
    assert (row["input_tokens"], row["cache_read_tokens"]) == (900, 300)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (120, 70)


def test_envelope_fields_and_fallbacks(con, tmp_path: Path) -> None:
    line = openai_line(
        latency_ms=812, ttft_ms=120, user="u1", account="acme", tags=["nightly"],
        session_id="s1", cost=0.0045, feedback=-1, service_tier="flex",
    )  # fmt: skip
    line["request"]["stream"] = True
    line["request"]["tools"] = [{"type": "function", "function": {"name": "f"}}]
    line["request"]["response_format"] = {"type": "json_object"}
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", [line]))])
    row = _row(con, "r1")
    assert row["feature"] == "nightly"  # tags[0] when no feature
    assert (row["user_id"], row["account_id"], row["session_id"]) == ("u1", "acme", "s1")
    assert (row["latency_ms"], row["ttft_ms"], row["stream"]) == (812, 120, True)
    assert str(row["logged_cost"]) == "0.004500000"
    assert row["service_tier"] == "flex"
    assert row["tools_count"] == 1
    assert row["response_format"] == "json_object"
    assert row["finish_reason"] == "stop"
    assert row["message_count"] == 1


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-10-01T12:00:00Z", "2026-10-01 12:00:00"),
        ("2026-10-01T14:00:00+02:00", "2026-10-01 12:00:00"),
        ("2026-10-01 12:00:00", "2026-10-01 12:00:00"),
        (1790856000, "2026-10-01 12:00:00"),
        (1790856000000, "2026-10-01 12:00:00"),
        ("1790856000000", "2026-10-01 12:00:00"),
        (1577836800, "2020-01-01 00:00:00"),
        ("2099-12-31T23:59:59Z", "2099-12-31 23:59:59"),
    ],
)
def test_timestamps_normalise_to_utc(con, tmp_path: Path, ts, expected: str) -> None:
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", [openai_line(ts=ts)]))])
    assert str(_row(con, "r1")["ts"]) == expected


@pytest.mark.parametrize(
    "ts", ["NaN", "Infinity", -1e13, 1e20, "1899-12-31T23:59:59Z", "294247-01-10", "yesterday"]
)
def test_a_time_that_is_none_or_out_of_range_is_quarantined(con, tmp_path: Path, ts) -> None:
    """Not a time, or outside the years 1900-9999: the row is quarantined, the run goes on."""
    for fmt, path in (
        ("openai", write_jsonl(tmp_path / "a.jsonl", [openai_line(ts=ts), openai_line("ok")])),
        ("csv", tmp_path / "a.csv"),
    ):
        if fmt == "csv":
            path.write_text(f"ts,model,input_tokens,output_tokens\n{ts},gpt-4o,1,1\n")
        report = ingest(con, [str(path)])
        assert report.totals.quarantined == 1, fmt
    reasons = con.execute("SELECT reason FROM quarantine").fetchall()
    assert [r[0].startswith("cannot read ") for r in reasons] == [True, True]


BAD_LINES = [
    ('{"id": "t", "timestamp": "2026-10-01', None, "invalid JSON"),
    (b"\xff\xfe\x00binary junk", None, "not UTF-8"),
    ("[1, 2, 3]", None, "expected a JSON object, got array"),
    ("", None, "empty line"),
]


def test_bad_rows_are_quarantined_with_file_line_and_field(con, tmp_path: Path) -> None:
    wrong_type = openai_line("w")
    wrong_type["response"]["usage"]["prompt_tokens"] = "lots"
    negative = openai_line("n", completion=-3)
    no_ts = openai_line("t")
    del no_ts["timestamp"]
    no_model = openai_line("m")
    del no_model["request"]["model"]
    bad_time = openai_line("b", ts="yesterday")
    no_tokens = {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "request": {"model": "gpt-4o"}}
    rows = [openai_line("good1"), *[line for line, _, _ in BAD_LINES], wrong_type, negative,
            no_ts, no_model, bad_time, no_tokens, openai_line("good2")]  # fmt: skip
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    report = ingest(con, [str(path)])
    assert report.totals.ingested == 2
    assert report.totals.quarantined == len(rows) - 2
    assert report.totals.rows == len(rows)
    got = {
        line: (field, reason)
        for line, field, reason in con.execute(
            "SELECT source_line, field, reason FROM quarantine WHERE source_file = ?", [str(path)]
        ).fetchall()
    }
    for offset, (_, field, reason) in enumerate(BAD_LINES, start=2):
        assert got[offset][0] == field
        assert reason in got[offset][1]
    assert got[6] == (
        "response.usage.prompt_tokens",
        'expected a non-negative integer, got the string "lots"',
    )
    assert got[7] == ("response.usage.completion_tokens", "expected a non-negative integer, got -3")
    assert got[8] == ("timestamp", "missing required field")
    assert got[9] == ("request.model", "missing required field")
    assert got[10] == ("timestamp", "cannot read yesterday as a time")
    assert got[11][0] == "response.usage"


def test_reingest_is_idempotent(con, tmp_path: Path) -> None:
    rows = [openai_line("a"), openai_line("b"), "not json"]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    first = ingest(con, [str(path)])
    second = ingest(con, [str(path), str(path)])
    assert (first.totals.ingested, first.totals.quarantined) == (2, 1)
    assert second.totals.ingested == second.totals.quarantined == 0
    assert second.totals.duplicates == 3  # the bad line was already quarantined
    assert con.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)


def test_bad_lines_are_quarantined_once_under_any_file_name(con, tmp_path: Path) -> None:
    """The same file under another name adds nothing: its bad lines are duplicates too."""
    rows = [openai_line("a"), "not json", openai_line("b", prompt=-1), b"\xff\xfe bytes", ""]
    first = ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))]).totals
    assert (first.rows, first.ingested, first.quarantined, first.duplicates) == (5, 1, 4, 0)
    copy = tmp_path / "copy" / "renamed.jsonl"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "a.jsonl").read_bytes())
    again = ingest(con, [str(copy)]).totals
    assert (again.rows, again.ingested, again.quarantined, again.duplicates) == (5, 0, 0, 5)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (4,)
    # bad lines alike at other places are each quarantined: the second blank line too
    more = [openai_line(rid) for rid in "cdefg"] + ["not json", "not json", "", " "]
    third = ingest(con, [str(write_jsonl(tmp_path / "b.jsonl", more))]).totals
    assert (third.ingested, third.quarantined, third.duplicates) == (5, 4, 0)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (8,)


def test_bad_csv_rows_are_quarantined_once_under_any_file_name(con, tmp_path: Path) -> None:
    text = (
        "ts,model,input_tokens,output_tokens\n"
        "2026-10-01,gpt-4o,1,1\n2026-10-01,gpt-4o,lots,1\n2026-10-01,gpt-4o,1,1,extra\n"
        "2026-10-01,gpt-4o,lots,1\n"
    )
    (tmp_path / "a.csv").write_text(text)
    (tmp_path / "b.csv").write_text(text)
    first = ingest(con, [str(tmp_path / "a.csv")]).totals
    assert (first.rows, first.ingested, first.quarantined, first.duplicates) == (4, 1, 3, 0)
    again = ingest(con, [str(tmp_path / "b.csv")]).totals
    assert (again.rows, again.ingested, again.quarantined, again.duplicates) == (4, 0, 0, 4)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (3,)


def test_an_unreadable_file_is_quarantined_once_under_any_name(con, tmp_path: Path) -> None:
    for name in ("a.parquet", "b.parquet"):
        (tmp_path / name).write_bytes(b"PAR1 this is not parquet")
    first = ingest(con, [str(tmp_path / "a.parquet")]).totals
    again = ingest(con, [str(tmp_path / "b.parquet"), str(tmp_path / "a.parquet")]).totals
    assert (first.quarantined, again.quarantined, again.duplicates) == (1, 0, 2)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)


def test_lines_without_id_get_stable_content_ids(con, tmp_path: Path) -> None:
    a, b = openai_line("x"), openai_line("y", completion=7)
    for line in (a, b):
        del line["id"]
        del line["response"]["id"]
    path = write_jsonl(tmp_path / "a.jsonl", [a, b])
    ingest(con, [str(path)])
    ids = sorted(r[0] for r in con.execute("SELECT request_id FROM requests").fetchall())
    assert len(ids) == 2 and all(i.startswith("h:") for i in ids)
    ingest(con, [str(path)])
    assert sorted(r[0] for r in con.execute("SELECT request_id FROM requests").fetchall()) == ids


def test_texts_are_stored_once(con, tmp_path: Path) -> None:
    rows = [openai_line(f"r{i}") for i in range(5)]
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    # 5 requests share the same system prompt, user message and response.
    assert con.execute("SELECT count(*) FROM texts").fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM messages").fetchone() == (10,)
    assert con.execute("SELECT count(DISTINCT system_hash) FROM requests").fetchone() == (1,)


def test_prompt_columns_agree_with_the_messages_rows(con, tmp_path: Path) -> None:
    """prompt_hash, system_hash and message_count, computed per row at ingest, are what the
    stored prompt (tools, top-level system, messages in position order) says they are."""
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    rows = [
        openai_line("plain"),
        openai_line("dev", messages=[{"role": "developer", "content": "Be brief."},
                                     {"content": "no role"}, {"role": "tools", "content": "x"}],
                    tools=tools),
        anthropic_line("top-system"),
        openai_line("no-prompt", messages=[]),
    ]  # fmt: skip
    rows[3]["request"]["messages"] = []
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    got = con.execute(
        """SELECT r.request_id, r.prompt_hash, r.system_hash, r.message_count,
                  CASE WHEN count(m.position) > 0 THEN printf('%016x', hash(
                    string_agg(m.text_hash, ',' ORDER BY m.position))) END,
                  arg_min(m.text_hash, m.position) FILTER (WHERE m.role IN ('system', 'developer')),
                  CASE WHEN count(m.position) > 0 THEN count(m.position) FILTER (
                    WHERE m.role NOT IN ('tools', 'system', 'developer')) END
           FROM requests r LEFT JOIN messages m USING (request_id)
           GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    assert [r[0] for r in got] == ["dev", "no-prompt", "plain", "top-system"]
    for rid, *stored, expected_hash, expected_system, expected_count in got:
        assert stored == [expected_hash, expected_system, expected_count], rid
    counts = {r[0]: r[3] for r in got}
    assert counts == {"dev": 1, "no-prompt": None, "plain": 1, "top-system": 1}


@pytest.mark.parametrize(
    ("content", "stored"),
    [
        ([{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}], "Hello there"),
        ([{"type": "image_url", "image_url": {"url": "x"}}], "[image, 1 chars, md5 9dd4e461]"),
        ([], ""),
        ("plain words", "plain words"),
        ("[1, 2]", "[1, 2]"),  # a string that is JSON, but not content parts
        ("[not json", "[not json"),
        ('[{"text": "a"}, "b"]', '[{"text": "a"}, "b"]'),  # not every element an object
        ('[{"text": "as parts"}]', "as parts"),  # the documented ambiguity of a string
    ],
)
def test_message_content_text(con, tmp_path: Path, content, stored: str) -> None:
    rows = [openai_line("r", messages=[{"role": "user", "content": content}])]
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    got = con.execute(
        "SELECT t.text FROM messages m JOIN texts t USING (text_hash) WHERE m.role = 'user'"
    ).fetchall()
    assert got == [(stored,)]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("parts", "stored"),
    [
        # Anthropic: a tool result's string, or its text blocks joined
        ([{"type": "tool_result", "tool_use_id": "t1", "content": "18C, sunny"}], "18C, sunny"),
        (
            [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
              "content": [{"type": "text", "text": "line 1\n"}, {"type": "text", "text": "2"}]}],
            "line 1\n2",
        ),
        ([{"type": "tool_result", "tool_use_id": "t1"}], ""),  # a result with no content
        # Anthropic media: a placeholder with the payload's size; a text document, its text
        (
            [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                          "data": "iVBORw0K"}}],
            f"[image, image/png, 8 chars, md5 {_md5('iVBORw0K')}]",
        ),
        (
            [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                             "data": "JVBERi0x"}}],
            f"[document, application/pdf, 8 chars, md5 {_md5('JVBERi0x')}]",
        ),
        (
            [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                             "data": "The contract says..."}}],
            "The contract says...",
        ),
        # OpenAI media
        (
            [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}],
            f"[image, image/jpeg, 27 chars, md5 {_md5('data:image/jpeg;base64,/9j/')}]",
        ),
        (
            [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
            f"[audio, wav, 8 chars, md5 {_md5('UklGRg==')}]",
        ),
        # Gemini parts: a tool's response, inline media
        ([{"functionResponse": {"name": "weather", "response": {"temp": 18}}}], '{"temp":18}'),
        (
            [{"text": "Is it? "}, {"inlineData": {"mimeType": "image/webp", "data": "UklG"}}],
            f"Is it? [media, image/webp, 4 chars, md5 {_md5('UklG')}]",
        ),
        ([{"type": "thinking", "thinking": "hmm", "signature": "s"}], ""),  # not read (docs)
    ],
)  # fmt: skip
def test_content_blocks_that_are_not_text(con, tmp_path: Path, parts, stored: str) -> None:
    rows = [anthropic_line("r")]
    rows[0]["request"]["messages"] = [{"role": "user", "content": parts}]
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    got = con.execute(
        "SELECT t.text FROM messages m JOIN texts t USING (text_hash) WHERE m.role = 'user'"
    ).fetchall()
    assert got == [(stored,)]


def _conversation(con) -> list[tuple[str, int, str, str]]:
    return con.execute(
        """SELECT m.request_id, m.position, m.role, t.text
           FROM messages m JOIN texts t USING (text_hash) ORDER BY 1, 2"""
    ).fetchall()


# One tool call, stored in the same shape whichever provider made it.
CALL = '{"name":"weather","arguments":{"city":"Paris","days":[1,2]}}'


def test_tool_calls_of_every_provider_are_stored_alike(con, tmp_path: Path) -> None:
    anthropic = anthropic_line("a")
    anthropic["request"]["messages"] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking. "},
            {"type": "tool_use", "id": "toolu_1", "name": "weather",
             "input": {"city": "Paris", "days": [1, 2]}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
    ]  # fmt: skip
    anthropic["response"]["content"] = [
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Paris"}}
    ]
    openai = openai_line("o", messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris", "days": [1, 2]}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ])  # fmt: skip
    openai["response"]["choices"][0]["message"] = {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_2", "type": "function",
             "function": {"name": "weather", "arguments": "not JSON"}}]}  # fmt: skip
    gemini = {
        "id": "g", "timestamp": "2026-10-01T12:00:00Z", "provider": "google",
        "request": {"model": "gemini-2.5-flash", "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris", "days": [1, 2]}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"result": "18C"}}}]}]},
        "response": {"candidates": [{"content": {"parts": [{"text": "18C in Paris."}]}}],
                     "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 5}},
    }  # fmt: skip
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", [anthropic, openai, gemini]))])
    assert _conversation(con) == [
        ("a", 0, "system", "You are terse."),
        ("a", 1, "user", "Weather in Paris?"),
        ("a", 2, "assistant", "Checking. " + CALL),
        ("a", 3, "user", "18C"),
        ("g", 0, "user", "Weather in Paris?"),
        ("g", 1, "assistant", CALL),
        ("g", 2, "user", '{"result":"18C"}'),
        # OpenAI's arguments are kept as the model wrote them (they are what it tokenised)
        ("o", 0, "user", "Weather in Paris?"),
        ("o", 1, "assistant", '{"name":"weather","arguments":{"city": "Paris", "days": [1, 2]}}'),
        ("o", 2, "tool", "18C"),
    ]
    responses = dict(con.execute(
        """SELECT r.request_id, t.text FROM requests r JOIN texts t
           ON t.text_hash = r.response_hash"""
    ).fetchall())  # fmt: skip
    assert responses == {
        "a": '{"name":"weather","arguments":{"city":"Paris"}}',
        "o": '{"name":"weather","arguments":"not JSON"}',  # not JSON: kept as a string
        "g": "18C in Paris.",
    }


def test_no_agent_message_with_a_tool_block_is_stored_empty(
    con, tmp_path: Path, repo_root: Path
) -> None:
    path = tmp_path / "agent.jsonl"
    script = repo_root / "benchmarks" / "generate_log.py"
    subprocess.run(
        [sys.executable, str(script), "--profile", "agent", "--requests", "200", "-o", str(path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    ingest(con, [str(path)])
    kinds = {"tool_use", "tool_result"}
    with_blocks = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("provider") != "anthropic":
            continue
        for message in record.get("request", {}).get("messages", []):
            content = message["content"]
            if isinstance(content, list) and any(b.get("type") in kinds for b in content):
                with_blocks += 1
    empty = con.execute(
        """SELECT count(*) FROM messages m JOIN requests r USING (request_id)
           JOIN texts t USING (text_hash)
           WHERE r.provider = 'anthropic' AND m.role IN ('user', 'assistant') AND t.text = ''"""
    ).fetchone()
    assert with_blocks > 1000  # the log has the agent shape: most messages are tool blocks
    assert empty == (0,)


def test_tools_that_are_not_json_do_not_stop_the_run(con, tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    rows = [openai_line("good", tools=tools), openai_line("odd", tools="[not json")]
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    got = con.execute("SELECT request_id, tools_count FROM requests ORDER BY 1").fetchall()
    assert got == [("good", 1), ("odd", None)]


def test_gzip_globs_and_folders(con, tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "one.jsonl", [openai_line("a")])
    with gzip.open(tmp_path / "two.jsonl.gz", "wb") as fh:
        fh.write(plain.read_bytes().replace(b'"a"', b'"b"'))
    assert ingest(con, [str(tmp_path / "*.jsonl*")]).totals.ingested == 2
    assert ingest(con, [str(tmp_path)]).totals.duplicates == 2


def test_missing_and_empty_inputs(con, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ingest(con, [str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="no file matches"):
        ingest(con, [str(tmp_path / "*.nothing")])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert ingest(con, [str(empty)]).totals.rows == 0


def test_detect_format(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text('{"timestamp": 1}\n')
    (tmp_path / "b.txt").write_text("TIMESTAMP,ContextTokens\n1,2\n")
    assert detect_format(tmp_path / "a.log") == "jsonl"
    assert detect_format(tmp_path / "b.txt") == "csv"


def test_csv_with_map_and_model(con, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "when,ctx,gen,who\n"
        "2026-10-01 12:00:00,100,20,u1\n"
        "2026-10-01 12:00:01,lots,20,u2\n"
        ",5,5,u3\n"
        "2026-10-01 12:00:02,7,-1,u4\n"
    )
    report = ingest(
        con, [str(path)], mapping={"ts": "when", "input_tokens": "ctx", "output_tokens": "gen",
                                   "user_id": "who"}, model="gpt-4o",
    )  # fmt: skip
    assert (report.totals.ingested, report.totals.quarantined) == (1, 3)
    row = con.execute("SELECT model, input_tokens, output_tokens, user_id FROM requests").fetchone()
    assert row == ("gpt-4o", 100, 20, "u1")
    got = {
        line: (field, reason)
        for line, field, reason in con.execute(
            "SELECT source_line, field, reason FROM quarantine"
        ).fetchall()
    }
    assert got[3] == ("ctx", "expected a non-negative integer, got lots")
    assert got[4] == ("when", "missing required field")
    assert got[5][0] == "gen"


def test_csv_rows_without_id_are_told_apart_by_every_cell(con, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        "ts,model,input_tokens,output_tokens\n"
        "2026-10-01,gpt-4o,1,1\n2026-10-01,gpt-4o,2,2\n2026-10-01,gpt-4o,1,1\n"
    )
    totals = ingest(con, [str(csv)]).totals
    assert (totals.ingested, totals.duplicates) == (2, 1)  # line 4 repeats line 2
    got = con.execute("SELECT source_line, input_tokens FROM requests ORDER BY 1").fetchall()
    assert got == [(2, 1), (3, 2)]
    assert ingest(con, [str(csv)]).totals.duplicates == 3


def test_csv_rows_the_reader_cannot_split_are_quarantined(con, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_bytes(
        b"ts,model,input_tokens,output_tokens\n2026-10-01,gpt-4o,1,1\n"
        b"2026-10-01,gpt-4o,1,1,EXTRA\n2026-10-01,gpt-4o\n\xff\xfe\x00,gpt-4o,1,1\n"
        b"2026-10-02,gpt-4o,2,2\nyesterday,gpt-4o,3,3\n"
    )
    totals = ingest(con, [str(csv)]).totals
    assert (totals.rows, totals.ingested, totals.quarantined) == (6, 2, 4)
    got = con.execute("SELECT source_line, field, reason FROM quarantine ORDER BY 1").fetchall()
    assert [(line, field) for line, field, _ in got] == [
        (3, None), (4, "input_tokens"), (5, "ts"), (7, "ts")
    ]  # fmt: skip
    assert got[0][2].startswith("too many columns")
    assert got[1][2].startswith("missing columns")
    assert got[2][2] == "not UTF-8 text"
    lines = con.execute("SELECT source_line, input_tokens FROM requests ORDER BY 1").fetchall()
    assert lines == [(2, 1), (6, 2)]  # the rows after the rejected ones keep their lines


def test_csv_errors_name_what_is_missing(con, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no timestamp column"):
        ingest(con, [str(path)])
    with pytest.raises(InputError, match="does not have"):
        ingest(con, [str(path)], mapping={"ts": "nope"})
    with pytest.raises(InputError, match="unknown field"):
        ingest(con, [str(path)], mapping={"bogus": "a"})


def test_parquet(con, tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "t.parquet"
    duckdb.sql(
        "SELECT TIMESTAMP '2026-10-01 12:00:00' AS timestamp, 'gpt-4o-mini' AS model, "
        "10 AS prompt_tokens, 3 AS completion_tokens"
    ).write_parquet(str(path))
    assert ingest(con, [str(path)]).totals.ingested == 1
    assert con.execute("SELECT model, input_tokens FROM requests").fetchone() == ("gpt-4o-mini", 10)


def test_azure_trace_loads_with_model_flag(con, shared_data: Path) -> None:
    path = shared_data / "real" / "AzureLLMInferenceTrace_code.csv"
    report = ingest(con, [str(path)], model="gpt-4o")
    assert report.totals.rows == 8819
    assert report.totals.ingested + report.totals.duplicates == 8819
    assert report.totals.quarantined == 0
    row = con.execute(
        "SELECT count(*), min(ts) >= TIMESTAMP '2023-11-16', sum(input_tokens) > 0 FROM requests"
    ).fetchone()
    assert row == (report.totals.ingested, True, True)


def test_inconsistent_usage_is_quarantined(con, tmp_path: Path) -> None:
    rows = [openai_line("c", cached=2000), openai_line("r", reasoning=500),
            anthropic_line(cache_write=10, cache_write_1h=20)]  # fmt: skip
    report = ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    assert report.totals.quarantined == 3
    reasons = [
        r[0] for r in con.execute("SELECT reason FROM quarantine ORDER BY source_line").fetchall()
    ]
    assert reasons == [
        "exceeds prompt_tokens",
        "exceeds completion_tokens",
        "exceeds cache_creation_input_tokens",
    ]


def test_gemini_native_body(con, tmp_path: Path) -> None:
    line = {
        "id": "gn1",
        "timestamp": "2026-10-01T12:00:00Z",
        "provider": "google",
        "request": {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello."}]},
                {"role": "user", "parts": [{"text": "Sum 2+2"}]},
            ],
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.1},
        },
        "response": {
            "modelVersion": "gemini-2.5-flash",
            "candidates": [{"content": {"role": "model", "parts": [{"text": "4"}]},
                            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 1,
                              "thoughtsTokenCount": 30},
        },
    }  # fmt: skip
    ingest(con, [str(write_jsonl(tmp_path / "g.jsonl", [line]))])
    row = _row(con, "gn1")
    assert (row["model"], row["input_tokens"], row["output_tokens"]) == ("gemini-2.5-flash", 20, 31)
    assert (row["max_tokens"], row["temperature"], row["finish_reason"]) == (64, 0.1, "stop")
    assert row["message_count"] == 3
    roles = con.execute(
        "SELECT m.role, t.text FROM messages m JOIN texts t USING (text_hash) ORDER BY position"
    ).fetchall()
    assert roles == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."),
                     ("user", "Sum 2+2")]  # fmt: skip
    response = con.execute(
        "SELECT t.text FROM requests r JOIN texts t ON t.text_hash = r.response_hash"
    ).fetchall()
    assert response == [("4",)]
