"""JSON-lines logs in advisor's envelope (docs/logging-format.md), parsed and validated in DuckDB.

Each line is parsed once into a fixed structure whose leaves are VARCHAR or JSON, so that a wrong
type never aborts the scan: it is caught by the checks of ingest.fields (types, and the limits of
rules/plausibility.yaml) and named in the quarantine, as is a key repeated in a usage object.
Provider token conventions are normalised here:
- OpenAI (and OpenAI-compatible, Azure, Gemini's OpenAI endpoint): `prompt_tokens` already
  includes `prompt_tokens_details.cached_tokens`; reasoning is inside `completion_tokens`.
- Anthropic: `cache_read_input_tokens` and `cache_creation_input_tokens` come on top of
  `input_tokens`; the canonical `input_tokens` is their sum.
- Gemini native (`generateContent`: `contents`/`parts`, `systemInstruction`, `candidates`,
  `usageMetadata`): cached tokens inside `promptTokenCount`; `thoughtsTokenCount` on top of
  `candidatesTokenCount`.
"""

from __future__ import annotations

import json

from advisor import plausibility
from advisor.ingest import fields
from advisor.ingest.times import implausible_sql, timestamp_sql
from advisor.store import hash_hex_sql

# Every leaf is VARCHAR or JSON: typing happens in SQL so that each failure can be named. Token
# counts and integer parameters are JSON, so that a number and a string holding one stay apart.
_USAGE: dict[str, object] = {
    "prompt_tokens": "JSON",
    "completion_tokens": "JSON",
    "prompt_tokens_details": {"cached_tokens": "JSON"},
    "completion_tokens_details": {"reasoning_tokens": "JSON"},
    "input_tokens": "JSON",
    "output_tokens": "JSON",
    "cache_read_input_tokens": "JSON",
    "cache_creation_input_tokens": "JSON",
    "cache_creation": {"ephemeral_1h_input_tokens": "JSON"},
}
_GEMINI_USAGE: dict[str, object] = {
    "promptTokenCount": "JSON",
    "candidatesTokenCount": "JSON",
    "cachedContentTokenCount": "JSON",
    "thoughtsTokenCount": "JSON",
}
# The usage objects are read as JSON text, then transformed: their text shows a duplicated key,
# which a transform hides (DuckDB keeps a key's first value, Python and JavaScript its last).
# They are small, so reading them twice costs little. (name, JSON path in the line, structure)
_USAGE_OBJECTS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("ru", "response.usage", _USAGE),
    ("tu", "usage", _USAGE),
    ("gu", "response.usageMetadata", _GEMINI_USAGE),
)
# Texts are VARCHAR: a JSON string arrives unescaped, anything else (a list of content parts,
# tool calls) as its compact JSON text; DuckDB's JSON reader and json_transform agree on it.
_MESSAGES = [{"role": "VARCHAR", "content": "VARCHAR", "tool_calls": "VARCHAR"}]
_BODY = {
    "model": "VARCHAR",
    "messages": _MESSAGES,
    "system": "VARCHAR",
    "max_tokens": "JSON",
    "max_completion_tokens": "JSON",
    # Gemini's native generateContent body
    "contents": [{"role": "VARCHAR", "parts": "VARCHAR"}],
    "systemInstruction": {"parts": "VARCHAR"},
    "generationConfig": {"maxOutputTokens": "JSON", "temperature": "VARCHAR"},
    "stream": "VARCHAR",
    "n": "JSON",
    "temperature": "VARCHAR",
    "tools": "VARCHAR",
    "response_format": "JSON",
    "service_tier": "VARCHAR",
    "user": "VARCHAR",
    "metadata": "JSON",
}
_RESPONSE = {
    "id": "VARCHAR",
    "model": "VARCHAR",
    "type": "VARCHAR",
    "choices": [
        {"message": {"content": "VARCHAR", "tool_calls": "VARCHAR"}, "finish_reason": "VARCHAR"}
    ],
    "content": "VARCHAR",
    "stop_reason": "VARCHAR",
    "service_tier": "VARCHAR",
    "usage": "JSON",
    "usageMetadata": "JSON",
    "candidates": [{"content": {"parts": "VARCHAR"}, "finishReason": "VARCHAR"}],
    "modelVersion": "VARCHAR",
}
STRUCTURE = {
    "id": "VARCHAR",
    "request_id": "VARCHAR",
    "timestamp": "VARCHAR",
    "latency_ms": "VARCHAR",
    "ttft_ms": "VARCHAR",
    "provider": "VARCHAR",
    "user": "VARCHAR",
    "user_id": "VARCHAR",
    "account": "VARCHAR",
    "account_id": "VARCHAR",
    "feature": "VARCHAR",
    "session_id": "VARCHAR",
    "tags": "JSON",
    "service_tier": "VARCHAR",
    "error": "JSON",
    "status": "VARCHAR",
    "cost": "VARCHAR",
    "feedback": "VARCHAR",
    "metadata": "JSON",
    "request": _BODY,
    "response": _RESPONSE,
    # flattened logs: body fields at the top level
    **{k: v for k, v in _BODY.items() if k not in ("user", "metadata", "service_tier")},
    "usage": "JSON",
}


def _usage(*path: str) -> tuple[str, ...]:
    """A usage field, in the response or (flattened logs) at the top level."""
    return ("response.usage." + ".".join(path), "usage." + ".".join(path))


# (canonical name, paths in the parsed line (first present wins; the first names the field in
# messages), rule) for every typed field.
_TYPED: list[tuple[str, tuple[str, ...], str]] = [
    ("latency_ms", ("latency_ms",), "duration"),
    ("ttft_ms", ("ttft_ms",), "duration"),
    (
        "max_tokens",
        ("request.max_completion_tokens", "request.max_tokens",
         "request.generationConfig.maxOutputTokens", "max_completion_tokens", "max_tokens"),
        "int32",
    ),
    ("n", ("request.n", "n"), "int32"),
    (
        "temperature",
        ("request.temperature", "request.generationConfig.temperature", "temperature"),
        "number",
    ),
    ("stream", ("request.stream", "stream"), "bool"),
    ("logged_cost", ("cost",), "money"),
    ("feedback", ("feedback",), "number"),
    ("u_prompt", _usage("prompt_tokens"), "count"),
    ("u_completion", _usage("completion_tokens"), "count"),
    ("u_cached", _usage("prompt_tokens_details", "cached_tokens"), "count"),
    ("u_reasoning", _usage("completion_tokens_details", "reasoning_tokens"), "count"),
    ("u_input", _usage("input_tokens"), "count"),
    ("u_output", _usage("output_tokens"), "count"),
    ("u_cache_read", _usage("cache_read_input_tokens"), "count"),
    ("u_cache_write", _usage("cache_creation_input_tokens"), "count"),
    ("u_cache_write_1h", _usage("cache_creation", "ephemeral_1h_input_tokens"), "count"),
    ("g_prompt", ("response.usageMetadata.promptTokenCount",), "count"),
    ("g_candidates", ("response.usageMetadata.candidatesTokenCount",), "count"),
    ("g_cached", ("response.usageMetadata.cachedContentTokenCount",), "count"),
    ("g_thoughts", ("response.usageMetadata.thoughtsTokenCount",), "count"),
]  # fmt: skip


def _ref(path: str) -> str:
    """SQL for a path in the parsed line (a usage field: in its transformed usage object)."""
    for alias, prefix, _ in _USAGE_OBJECTS:
        if path.startswith(prefix + "."):
            return alias + path[len(prefix) :]
    return "j." + path


def _levels(structure: dict[str, object], path: str = "$") -> list[tuple[str, list[str]]]:
    """(JSON path, keys read there) of every object level in a structure, outermost first."""
    out = [(path, list(structure))]
    for key, sub in structure.items():
        if isinstance(sub, dict):
            out += _levels(sub, f"{path}.{key}")
    return out


def _keys_sql(json_expr: str, structure: dict[str, object]) -> str:
    """The keys of each object level of `structure` in `json_expr`, one parse: a list of lists."""
    paths = ", ".join(_sql_str(path) for path, _ in _levels(structure))
    return f"json_keys({json_expr}, [{paths}])"


def _duplicate_sql(keys: str, structure: dict[str, object]) -> str:
    """SQL for the first key read from `structure` that its object holds twice, as a path
    relative to the structure (`prompt_tokens_details.cached_tokens`), else NULL; `keys` is a
    column holding `_keys_sql` of the object."""
    found = []
    for i, (path, names) in enumerate(_levels(structure), start=1):
        level = f"{keys}[{i}]"
        known = ", ".join(_sql_str(k) for k in names)
        prefix = _sql_str(path.removeprefix("$").removeprefix(".") + "." if path != "$" else "")
        found.append(
            f"CASE WHEN len({level}) > len(list_distinct({level})) THEN {prefix} || list_filter("
            f"{level}, lambda k, p: k IN ({known}) AND list_position({level}, k) < p)[1] END"
        )
    every = f"flatten({keys})"  # one cheap test first: a repeat at any level is a repeat here
    return (
        f"CASE WHEN len({every}) > len(list_distinct({every})) THEN coalesce("
        + ", ".join(found)
        + ") END"
    )


# White space around a line's object, as a SQL expression: JSON's four, and the vertical tab and
# form feed that DuckDB's reader also skips there (C isspace).
_SPACE = "chr(32) || chr(9) || chr(10) || chr(13) || chr(11) || chr(12)"
_ODD_SPACE = [11, 12]  # the two JSON itself does not allow
# Longest line the parallel reader takes; its buffers grow with it (1 GB cost 1.2 GB of memory).
# A longer line makes read_json fail, and ingest reads that file the line-exact way instead.
MAX_LINE_BYTES = 1 << 26
# The reader's object size when the longest line is shorter: its buffers are twice this, per
# thread and in flight, all outside the table data DuckDB can spill. With 64 MB on a log of
# 21 KB lines (long agent histories) they took 888 MB of a 1 GB budget, and ingest failed with
# "Out of Memory"; 2 MiB reads as fast as 64 MB on the heavy log.
MIN_OBJECT_BYTES = 1 << 21


def object_size(longest_line: int) -> int:
    """read_json's maximum_object_size for a file whose longest line has this many bytes:
    the next power of two above it, at least MIN_OBJECT_BYTES."""
    return max(MIN_OBJECT_BYTES, 1 << max(0, longest_line).bit_length())


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duckdb_type(node: object) -> str:
    if isinstance(node, dict):
        return "STRUCT(" + ", ".join(f'"{k}" {_duckdb_type(v)}' for k, v in node.items()) + ")"
    if isinstance(node, list):
        return _duckdb_type(node[0]) + "[]"
    return str(node)


# The fields a content part is read by, all in one parse. VARCHAR: a string unescaped, anything
# else its compact JSON text; JSON: read further only for the rare parts that need it.
_PART = {
    "type": "VARCHAR", "text": "VARCHAR", "name": "VARCHAR", "input": "VARCHAR",
    "content": "VARCHAR", "functionCall": "JSON", "functionResponse": "JSON", "source": "JSON",
    "image_url": "JSON", "input_audio": "JSON", "file": "JSON", "inlineData": "JSON",
    "fileData": "JSON",
}  # fmt: skip
_PARTS = _sql_str(json.dumps([_PART]))
_CALL = _sql_str(json.dumps([{"function": {"name": "VARCHAR", "arguments": "VARCHAR"}}]))


def tool_call_sql(name: str, arguments: str) -> str:
    """One tool call as stored, whichever provider made it: `{"name":…,"arguments":…}`, the
    arguments as the JSON text the model wrote (OpenAI's `arguments` string, Anthropic's
    `input`, Gemini's `args`, compacted), or as a JSON string where that text is not JSON."""
    args = f"CASE WHEN json_valid({arguments}) THEN {arguments} ELSE to_json({arguments}) END"
    return (
        f"""'{{"name":' || coalesce(to_json({name}), 'null') || ',"arguments":' """
        f"|| coalesce({args}, 'null') || '}}'"
    )


def _media_sql(kind: str, media: str, payload: str) -> str:
    """The placeholder of an image, document, audio or file part: its kind, media type, and the
    size and md5 of its payload (base64 data, URL or file id), e.g.
    `[image, image/png, 48213 chars, md5 1a2b3c4d]`. Its tokens are not those of the text;
    the size says how big it is and the md5 keeps two different images apart in prefixes."""
    size = f"', ' || length({payload}) || ' chars, md5 ' || left(md5({payload}), 8)"
    media = f"coalesce(', ' || nullif({media}, ''), '')"
    return f"'[' || {kind} || {media} || coalesce({size}, '') || ']'"


def _part_sql(p: str, nested: bool) -> str:
    """The text of one content part `p` (a struct of _PART): its `text`; a tool call (Anthropic
    `tool_use`, Gemini `functionCall`) as tool_call_sql; a tool's result (Anthropic
    `tool_result`: its string or its parts; Gemini `functionResponse`: its `response`); a
    document sent as text, that text; other media a placeholder (_media_sql); else NULL."""

    def get(field: str, path: str) -> str:
        return f"json_extract_string({p}.{field}, '{path}')"

    def json_at(field: str, path: str) -> str:
        return f"json_extract({p}.{field}, '{path}')::VARCHAR"

    url = f"coalesce({get('image_url', '$.url')}, {get('image_url', '$')})"
    source = f"coalesce({get('source', '$.data')}, {get('source', '$.url')}, "
    source += f"{get('source', '$.file_id')})"
    file = f"coalesce({get('file', '$.file_data')}, {get('file', '$.file_id')})"
    arms = [
        (f"{p}.text IS NOT NULL", f"{p}.text"),
        (f"{p}.type IN ('tool_use', 'server_tool_use')", tool_call_sql(f"{p}.name", f"{p}.input")),
        (
            f"{p}.functionCall IS NOT NULL",
            tool_call_sql(get("functionCall", "$.name"), json_at("functionCall", "$.args")),
        ),
        (
            f"ends_with({p}.type, 'tool_result')",
            "NULL" if nested else _result_sql(f"{p}.content"),
        ),
        (f"{p}.functionResponse IS NOT NULL", json_at("functionResponse", "$.response")),
        (
            f"{p}.type = 'document' AND {get('source', '$.type')} = 'text'",
            get("source", "$.data"),
        ),
        (
            f"{p}.source IS NOT NULL",
            _media_sql(f"coalesce({p}.type, 'media')", get("source", "$.media_type"), source),
        ),
        (
            f"{p}.image_url IS NOT NULL",
            _media_sql("'image'", f"regexp_extract({url}, '^data:([^;,]+)', 1)", url),
        ),
        (
            f"{p}.input_audio IS NOT NULL",
            _media_sql("'audio'", get("input_audio", "$.format"), get("input_audio", "$.data")),
        ),
        (f"{p}.file IS NOT NULL", _media_sql("'file'", get("file", "$.filename"), file)),
        (
            f"{p}.inlineData IS NOT NULL",
            _media_sql("'media'", get("inlineData", "$.mimeType"), get("inlineData", "$.data")),
        ),
        (
            f"{p}.fileData IS NOT NULL",
            _media_sql("'file'", get("fileData", "$.mimeType"), get("fileData", "$.fileUri")),
        ),
    ]
    return "CASE " + " ".join(f"WHEN {when} THEN {then}" for when, then in arms) + " END"


def _result_sql(content: str) -> str:
    """A tool result's text; its parts are read only where there are some, as DuckDB runs the
    lambda of text_of over every row that reaches it."""
    parts = text_of(content, nested=True)
    return f"coalesce(CASE WHEN left({content}, 1) = '[' THEN {parts} ELSE {content} END, '')"


def text_of(expr: str, nested: bool = False) -> str:
    """Text of a content value: a string, or its content parts' texts (_part_sql) joined.

    Content parts arrive as their JSON text, so a string that is itself a JSON array of objects
    reads as parts: the one ambiguity of typing content as VARCHAR (documented in the format).
    Each JSON function parses its input again, and a system prompt sent as parts is kilobytes:
    two parses here, the element types (NULL where the text is not JSON) and the parts.
    `nested`: the parts of a tool result, which hold no further tool results.
    """
    p = "inner_part" if nested else "part"  # lambda names no column of the staging queries has
    return (
        f"CASE WHEN left({expr}, 1) = '[' AND len(list_filter(try(json_type({expr}, '$[*]')), "
        f"lambda t: t <> 'OBJECT')) = 0 "
        f"THEN array_to_string(list_transform(try(json_transform({expr}, {_PARTS})), "
        f"lambda {p}: {_part_sql(p, nested)}), '') ELSE {expr} END"
    )


def message_text_sql(content: str, tool_calls: str) -> str:
    """A message's text: its content's (text_of), then each of its OpenAI `tool_calls` as
    tool_call_sql; NULL where it has neither."""
    calls = (
        f"array_to_string(list_transform(try(json_transform(CASE WHEN left({tool_calls}, 1) = '{{' "
        f"THEN '[' || {tool_calls} || ']' ELSE {tool_calls} END, {_CALL})), "
        f"lambda call: {tool_call_sql('call.function.name', 'call.function.arguments')}), '')"
    )
    # concatenating only where there are tool calls: `||` copies, and prompts are gigabytes
    return (
        f"CASE WHEN left({tool_calls}, 1) IN ('[', '{{') "
        f"THEN coalesce({text_of(content)}, '') || coalesce({calls}, '') "
        f"ELSE {text_of(content)} END"
    )


_CHOICE = "j.response.choices[1].message"


def _known_filter(hash_expr: str, text_expr: str, with_known: bool) -> str:
    """The text, or NULL when its hash is in the `$known` parameter (texts the store holds).

    DuckDB's `in_clause` optimizer would turn a list of five or more into a join, which loses
    the scan's order that ingest numbers rows by: ingest disables it for this query.
    """
    if not with_known:
        return text_expr
    return f"CASE WHEN list_contains($known::UBIGINT[], {hash_expr}) THEN NULL ELSE {text_expr} END"


def _lines_source(table: str) -> str:
    structure = _sql_str(json.dumps(STRUCTURE))
    # Only lines that fail are parsed again, to say why. Each line but the first of a block starts
    # with the previous newline: JSON ignores it, and only the few bytes that are looked at get
    # trimmed (trimming whole lines would copy gigabytes), but for the rare line whose object a
    # vertical tab or form feed surrounds: JSON rejects those, DuckDB's reader skips them.
    odd = " OR ".join(
        f"contains({end}(raw, 16), chr({c}))" for end in ("left", "right") for c in _ODD_SPACE
    )
    return f"""
  SELECT line, junk, junk_hash, raw,
         starts_with(ltrim(left(raw, 16), {_SPACE}), '{{') AS looks_like_object,
         CASE WHEN looks_like_object THEN try(json_transform(
           CASE WHEN {odd} THEN trim(raw, {_SPACE}) ELSE raw END, {structure})) END AS j
  FROM {table}"""


def _file_source(path: str, max_object: int) -> str:
    columns = (
        "{"
        + ", ".join(f"{_sql_str(k)}: {_sql_str(_duckdb_type(v))}" for k, v in STRUCTURE.items())
        + "}"
    )
    packed = ", ".join(f'"{k}" := "{k}"' for k in STRUCTURE)
    # DuckDB's parallel reader gives one row per non-blank line, in order (NULLs for a line it
    # cannot read). No ordinal here: WITH ORDINALITY would run the whole query on one thread;
    # a table created from this keeps the order, so its rowid is the ordinal.
    return f"""
  SELECT NULL::BIGINT AS line, NULL::VARCHAR AS junk, NULL::VARCHAR AS junk_hash,
         NULL::VARCHAR AS raw,
         true AS looks_like_object, struct_pack({packed}) AS j
  FROM read_json({_sql_str(path)}, format = 'newline_delimited', records = true,
                 ignore_errors = true, maximum_object_size = {max_object},
                 columns = {columns})"""


def lines_sql(table: str, convention: str = "auto", default_model: str | None = None) -> str:
    """Staged rows from `table(line, raw, junk, junk_hash)` (see files.lines_table): every line,
    bad ones with the reason, an excerpt and the md5 of their content (blanks around it aside)."""
    return _staging_sql(_lines_source(table), True, convention, default_model, False)


def file_sql(
    path: str,
    convention: str = "auto",
    default_model: str | None = None,
    max_object: int = MAX_LINE_BYTES,
) -> str:
    """Staged rows read straight from a JSON-lines file by DuckDB's parallel reader.

    `source_line` is NULL: a table created from this query keeps the file's order, and ingest
    numbers its rows from their rowid (the ordinal among non-blank lines) and the line index.
    Rows that fail a check carry a reason but no excerpt: ingest re-reads those lines with
    `lines_sql`, which names the reason from the raw text. Texts whose hash is in the `$known`
    parameter (a list of hash() values) come out NULL, their hash kept: the store already has
    them, and carrying the same long system prompt through every row would cost gigabytes.
    `max_object` is the reader's maximum_object_size (see object_size).
    """
    return _staging_sql(_file_source(path, max_object), False, convention, default_model, True)


def _staging_sql(
    source: str,
    raw_checks: bool,
    convention: str,
    default_model: str | None,
    with_known: bool,
) -> str:
    """Output columns: source_line, excerpt, error_field, error_reason, the canonical columns
    that come from the log, `msgs` (list of {role, hash, text}), and hash/text pairs for the
    system prompt, the tools block and the response."""
    typed = []
    values = []
    errors = []
    for name, paths, rule in _TYPED:
        raw = f"raw_{name}"
        typed.append(f"coalesce({', '.join(_ref(path) for path in paths)}) AS {raw}")
        number, value, arms = fields.typed_sql(rule, raw, name, _sql_str(paths[0]))
        typed.append(number)
        values.append(value)
        errors += arms
    typed_sql = ",\n       ".join(typed)
    values_sql = ",\n       ".join(values)
    errors_sql = "\n      ".join(errors)
    usage_sql = ",\n         ".join(
        f"json_transform(j.{path}, {_sql_str(json.dumps(structure))}) AS {alias}, "
        f"{_keys_sql(f'j.{path}', structure)} AS {alias}_keys"
        for alias, path, structure in _USAGE_OBJECTS
    )
    repeated = ", ".join(
        f"{_sql_str(path + '.')} || {_duplicate_sql(f'{alias}_keys', structure)}"
        for alias, path, structure in _USAGE_OBJECTS
    )
    line_checks = ""
    if raw_checks:
        line_checks = """
      WHEN raw IS NULL THEN '|not UTF-8 text'
      WHEN NOT regexp_matches(raw, '[^[:space:]]') THEN '|empty line'
      WHEN contains(raw, chr(0)) THEN '|binary data (NUL byte)'
      WHEN j IS NULL AND NOT looks_like_object AND json_valid(raw)
        THEN '|expected a JSON object, got ' || lower(json_type(raw))
      WHEN j IS NULL THEN '|invalid JSON (truncated or malformed line)'"""
    excerpt = "NULL::VARCHAR"
    content_hash = "NULL::VARCHAR"
    if raw_checks:
        excerpt = f"coalesce(junk, trim(left(ltrim(left(raw, 400), {_SPACE}), 200), {_SPACE}))"
        content_hash = f"coalesce(junk_hash, md5(trim(raw, {_SPACE})))"
    openai_in = "u_prompt IS NOT NULL OR g_prompt IS NOT NULL"
    anthropic_in = "u_input IS NOT NULL"
    if convention == "openai":
        anthropic_in = "false"
    elif convention == "anthropic":
        openai_in = "false"
    ts = "raw_ts"
    default = "NULL" if default_model is None else _sql_str(default_model)
    hashed = {  # each text hashed once (hash_t below): system prompts alone are gigabytes
        name: (
            f"CASE WHEN {name}_t IS NOT NULL THEN {hash_hex_sql(f'{name}_h')} END",
            _known_filter(f"{name}_h", f"{name}_t", with_known),
        )
        for name in ("system", "tools", "response")
    }
    msg_text = _known_filter("m.h", "m.text", with_known)
    # A request's totals, normalised (module docstring); each part is checked on its own first.
    input_total = f"""CASE WHEN {anthropic_in}
            THEN u_input + coalesce(u_cache_read, 0) + coalesce(u_cache_write, 0)
            WHEN u_prompt IS NOT NULL THEN u_prompt
            WHEN g_prompt IS NOT NULL THEN g_prompt END"""
    output_total = f"""CASE WHEN {anthropic_in} THEN u_output
            WHEN u_prompt IS NOT NULL THEN u_completion
            WHEN g_prompt IS NOT NULL THEN coalesce(g_candidates, 0) + coalesce(g_thoughts, 0)
            END"""
    totals = "\n      ".join(
        plausibility.when_sql(
            "tokens", total, "'response.usage'", f"CAST({total} AS VARCHAR) || ' ({what})'"
        )
        for total, what in (
            ("input_total", "input, cache reads and cache writes"),
            ("output_total", "output and thoughts"),
        )
    )
    return f"""
WITH structured AS ({source}
), usage_objects AS (
  SELECT *,
         {usage_sql}
  FROM structured
), typed AS (
  SELECT line, junk, junk_hash, raw, j, looks_like_object,
       coalesce({repeated}) AS repeated_key,
       j.timestamp AS {ts},
       {timestamp_sql("j.timestamp")} AS ts,
       coalesce(j.request.model, j.model, j.response.model, j.response.modelVersion, {default})
         AS model,
       coalesce(j.request.messages, j.messages,
                list_transform(j.request.contents, lambda c: {{
                  'role': CASE c.role WHEN 'model' THEN 'assistant' ELSE c.role END,
                  'content': c.parts, 'tool_calls': NULL::VARCHAR}})) AS messages,
       coalesce(j.request.system, j.system, j.request.systemInstruction.parts) AS system_raw,
       coalesce(j.request.tools, j.tools) AS tools_t,
       coalesce(j.request.response_format, j.response_format) AS response_format_json,
       {typed_sql}
  FROM usage_objects
), valued AS (
  SELECT *,
       {values_sql}
  FROM typed
), checked AS (
  SELECT *,
    {input_total} AS input_total,
    {output_total} AS output_total,
    CASE{line_checks}
      WHEN {ts} IS NULL THEN 'timestamp|missing required field'
      WHEN ts IS NULL THEN 'timestamp|cannot read ' || left({ts}, 40) || ' as a time'
      {implausible_sql(ts, "'timestamp'")}
      WHEN model IS NULL OR model = '' THEN 'request.model|missing required field'
      WHEN repeated_key IS NOT NULL THEN repeated_key || '|duplicate key: JSON readers '
        || 'disagree on its value (Python and JavaScript keep the last, DuckDB the first)'
      {errors_sql}
      {totals}
      WHEN u_cached > u_prompt
        THEN 'response.usage.prompt_tokens_details.cached_tokens|exceeds prompt_tokens'
      WHEN u_reasoning > u_completion
        THEN 'response.usage.completion_tokens_details.reasoning_tokens|exceeds completion_tokens'
      WHEN u_cache_write_1h > u_cache_write
        THEN 'response.usage.cache_creation.ephemeral_1h_input_tokens|'
             || 'exceeds cache_creation_input_tokens'
      WHEN g_cached > g_prompt
        THEN 'response.usageMetadata.cachedContentTokenCount|exceeds promptTokenCount'
      WHEN NOT ({openai_in} OR {anthropic_in}) AND messages IS NULL
        THEN 'response.usage|no token counts and no prompt text to count them from'
    END AS error,
    list_transform(messages, lambda m: {{
        'role': m.role,
        'text': coalesce({message_text_sql("m.content", "m.tool_calls")}, '')
      }}) AS msgs_t,
    {text_of("system_raw")} AS system_t,
    coalesce({message_text_sql(f"{_CHOICE}.content", f"{_CHOICE}.tool_calls")},
             {text_of("j.response.content")},
             {text_of("j.response.candidates[1].content.parts")}) AS response_t
  FROM valued
), hash_t AS (
  SELECT *, hash(system_t) AS system_h, hash(tools_t) AS tools_h, hash(response_t) AS response_h
  FROM checked
)
SELECT line AS source_line,
       {excerpt} AS excerpt,
       CASE WHEN error IS NOT NULL THEN {content_hash} END AS content_hash,
       nullif(split_part(error, '|', 1), '') AS error_field,
       CASE WHEN error IS NOT NULL THEN substr(error, strpos(error, '|') + 1) END AS error_reason,
       coalesce(j.id, j.request_id, j.response.id) AS logged_id,
       ts,
       latency_ms, ttft_ms,
       lower(coalesce(j.provider,
         CASE WHEN {anthropic_in} OR j.response.type = 'message' THEN 'anthropic'
              WHEN g_prompt IS NOT NULL THEN 'google' END)) AS provider,
       model, j.response.model AS response_model,
       coalesce(j.user, j.user_id, j.request.user,
                json_extract_string(j.request.metadata, '$.user_id'),
                json_extract_string(j.metadata, '$.user_id')) AS user_id,
       coalesce(j.account, j.account_id, json_extract_string(j.metadata, '$.account_id'))
         AS account_id,
       coalesce(j.feature, json_extract_string(j.tags, '$[0]'),
                json_extract_string(j.request.metadata, '$.feature'),
                json_extract_string(j.metadata, '$.feature')) AS feature,
       j.session_id AS session_id,
       input_total AS input_tokens,
       CASE WHEN {anthropic_in} THEN coalesce(u_cache_read, 0)
            WHEN u_prompt IS NOT NULL THEN coalesce(u_cached, 0)
            WHEN g_prompt IS NOT NULL THEN coalesce(g_cached, 0) END AS cache_read_tokens,
       CASE WHEN {anthropic_in} THEN coalesce(u_cache_write, 0)
            WHEN {openai_in} THEN 0 END AS cache_write_tokens,
       CASE WHEN {anthropic_in} THEN coalesce(u_cache_write_1h, 0)
            WHEN {openai_in} THEN 0 END AS cache_write_1h_tokens,
       output_total AS output_tokens,
       CASE WHEN u_prompt IS NOT NULL THEN u_reasoning
            WHEN g_prompt IS NOT NULL THEN g_thoughts END AS reasoning_tokens,
       -- in range wherever the row is kept (checked above)
       TRY_CAST(max_tokens AS INTEGER) AS max_tokens, stream, TRY_CAST(n AS INTEGER) AS n,
       temperature,
       -- tools sent as a string that is not JSON: the count is unknown, the row still good
       CASE WHEN left(tools_t, 1) = '[' THEN try(json_array_length(tools_t))::INTEGER
            END AS tools_count,
       coalesce(json_extract_string(response_format_json, '$.type'),
                json_extract_string(response_format_json, '$')) AS response_format,
       lower(coalesce(j.service_tier, j.request.service_tier, j.response.service_tier,
                      'default')) AS service_tier,
       CASE WHEN j.error IS NOT NULL AND json_type(j.error) <> 'NULL' THEN 'error'
            WHEN lower(j.status) IN ('error', 'failed', 'failure') THEN 'error'
            ELSE 'ok' END AS status,
       coalesce(j.response.choices[1].finish_reason, j.response.stop_reason,
                lower(j.response.candidates[1].finishReason)) AS finish_reason,
       logged_cost, feedback,
       list_transform(list_transform(msgs_t, lambda m: {{
           'role': m.role, 'text': m.text, 'h': hash(m.text)}}),
         lambda m: {{'role': m.role, 'hash': {hash_hex_sql("m.h")}, 'text': {msg_text}}})
         AS msgs,
       {hashed["system"][0]} AS system_hash, {hashed["system"][1]} AS system_text,
       {hashed["tools"][0]} AS tools_hash, {hashed["tools"][1]} AS tools_text,
       {hashed["response"][0]} AS response_hash, {hashed["response"][1]} AS response_text,
       ({openai_in} OR {anthropic_in}) AS has_usage,
       CASE WHEN coalesce(j.id, j.request_id, j.response.id) IS NULL THEN md5(j::VARCHAR) END
         AS raw_hash
FROM hash_t
"""
