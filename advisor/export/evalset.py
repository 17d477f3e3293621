"""`advisor export evalset`: the requests the router would move, ready to replay before switching.

A stratified sample of routed requests (per feature or template, source -> target route, and
confidence band), with their original prompts and the original model's response:

- evalset.jsonl: one chat-format record per request, `messages` ending with the original
  assistant answer, plus `metadata` (request id, route, difficulty, confidence, band);
- promptfoo/tests.jsonl and promptfoo/promptfooconfig.yaml: a promptfoo suite that replays each
  request on its original and its proposed model and compares both with the original answer
  (exact label for one-line answers, valid JSON for JSON answers, similarity otherwise).

- README.md: what the files are, and what they hold (PRIVACY_NOTE).

The files hold full prompt text from the logs, unredacted on purpose (a replay needs the real
prompts): they stay on the machine that ran advisor. Every other output is redacted (redact.py);
`redact=True` masks the prompts, answers and ids here too, at the cost of a replay on masked text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import yaml

from advisor.errors import AdvisorError
from advisor.redact import scrub
from advisor.routing import MICRO

BANDS = (0.9, 0.95, 0.99)  # confidence bands: [0.9, 0.95), [0.95, 0.99), [0.99, 1]
PER_STRATUM = 10
SIMILARITY = 0.75
SHORT_ANSWER = 40  # characters: a label or a number, compared exactly (case and spaces aside)
_PROMPTFOO_PROVIDER = {
    "openai": "openai:chat",
    "anthropic": "anthropic:messages",
    "google": "google",
    "gemini": "google",
    "vertex_ai": "vertex",
    "azure": "azure:chat",
}


PRIVACY_NOTE = (
    "the evaluation set holds the full prompts and answers from the logs, unredacted (a replay "
    "needs the real text): keep it on this machine, or write a masked one with "
    "`advisor export evalset --redact`"
)
REDACTED_NOTE = (
    "the evaluation set's prompts, answers and ids are redacted (secrets, e-mails, phone numbers, "
    "names masked, as in the report): a replay runs on the masked text"
)


def _band_sql() -> str:
    edges = sorted(BANDS, reverse=True)
    arms = " ".join(
        f"WHEN d.confidence >= {e} THEN '{e:.2f}-{(edges[i - 1] if i else 1.0):.2f}'"
        for i, e in enumerate(edges)
    )
    return f"CASE {arms} ELSE 'below-{min(BANDS):.2f}' END"


# The requests an evaluation set draws from: routed, answered, with the answer logged.
_ROUTED = """FROM tiering_decisions d JOIN requests r USING (request_id)
             WHERE d.routed AND r.status = 'ok' AND r.response_hash IS NOT NULL"""


def evalset_size(con: duckdb.DuckDBPyConnection) -> int:
    """How many requests an evaluation set could hold (routed, answered, with a prompt)."""
    return int(
        con.execute(
            f"""SELECT count(*) {_ROUTED}
                AND EXISTS (SELECT 1 FROM messages m WHERE m.request_id = d.request_id)"""
        ).fetchall()[0][0]
    )


def _sample(con: duckdb.DuckDBPyConnection, per_stratum: int, seed: int) -> list[tuple[Any, ...]]:
    return con.execute(
        f"""WITH routed AS (
              SELECT d.request_id, d.model_key, d.routed_model, d.difficulty, d.confidence,
                     d.template_id, d.feature, r.response_hash, r.provider,
                     coalesce(d.feature, d.template_id, '(none)') AS stratum,
                     {_band_sql()} AS band
              {_ROUTED}
            ), ranked AS (
              SELECT *, row_number() OVER (
                  PARTITION BY stratum, model_key, routed_model, band
                  ORDER BY md5(request_id || ':' || {int(seed)}), request_id) AS k
              FROM routed
            )
            SELECT request_id, model_key, routed_model, difficulty, confidence, template_id,
                   feature, response_hash, band, provider
            FROM ranked WHERE k <= {int(per_stratum)}
            ORDER BY stratum, model_key, routed_model, band, k"""
    ).fetchall()


def _prompts(
    con: duckdb.DuckDBPyConnection, ids: list[str]
) -> dict[str, tuple[list[dict[str, str]], Any]]:
    rows = con.execute(
        """SELECT m.request_id, m.role, t.text FROM messages m
           JOIN texts t USING (text_hash)
           WHERE m.request_id IN (SELECT unnest(?)) ORDER BY m.request_id, m.position""",
        [ids],
    ).fetchall()
    out: dict[str, tuple[list[dict[str, str]], Any]] = {}
    for request_id, role, text in rows:
        messages, tools = out.setdefault(request_id, ([], None))
        if role == "tools":
            try:
                tools = json.loads(text)
            except ValueError:
                tools = None
            out[request_id] = (messages, tools)
        else:
            messages.append({"role": role, "content": text})
    return out


def _provider_id(provider: str | None, model: str) -> str:
    return f"{_PROMPTFOO_PROVIDER.get(provider or '', provider or 'openai')}:{model}"


def _asserts(answer: str) -> list[dict[str, Any]]:
    text = answer.strip()
    try:
        json.loads(text)
        is_json = text[:1] in "{["
    except ValueError:
        is_json = False
    if is_json:
        return [
            {"type": "is-json"},
            {"type": "similar", "value": "{{original_response}}", "threshold": SIMILARITY},
        ]
    if len(text) <= SHORT_ANSWER and "\n" not in text:
        return [
            {
                "type": "javascript",
                "value": "output.trim().toLowerCase() === "
                "context.vars.original_response.trim().toLowerCase()",
            }
        ]
    return [{"type": "similar", "value": "{{original_response}}", "threshold": SIMILARITY}]


def export_evalset(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    *,
    per_stratum: int = PER_STRATUM,
    seed: int = 0,
    providers: dict[str, str] | None = None,
    redact: bool = False,
) -> list[Path]:
    """Write the evaluation set into `out_dir`; return the files written.

    `providers` maps a model key to its provider (default: the providers in the store's router);
    `redact` masks every prompt, answer, tool definition and id as the reports do.
    """
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    if "tiering_decisions" not in tables:
        raise AdvisorError(
            "this store holds no tiering analysis", hint="run `advisor analyze` first"
        )
    if evalset_size(con) == 0:  # an empty set would pass for a check that found nothing wrong
        raise AdvisorError(
            "no routed request has a logged prompt and answer: no evaluation set to write",
            hint="the analysis's levers[tiering].why_not says why nothing was routed",
        )
    if providers is None:
        from advisor import store
        from advisor.levers.tiering import META_ROUTER

        raw = store.get_meta(con, META_ROUTER)
        providers = json.loads(raw).get("providers", {}) if raw else {}
    sample = _sample(con, per_stratum, seed)
    prompts = _prompts(con, [r[0] for r in sample])
    hashes = [r[7] for r in sample]
    answers = dict(
        con.execute(
            "SELECT text_hash, text FROM texts WHERE text_hash IN (SELECT unnest(?))", [hashes]
        ).fetchall()
    )
    out = Path(out_dir)
    (out / "promptfoo").mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    for rid, source, target, difficulty, conf, template, feature, rhash, band, prov in sample:
        messages, tools = prompts.get(rid, ([], None))
        answer = answers.get(rhash)
        if not messages or answer is None:
            continue
        if redact:
            messages, tools, answer = scrub(messages), scrub(tools), scrub(answer)
            rid, feature, template = scrub(rid), scrub(feature), scrub(template)
        meta = {
            "request_id": rid,
            "feature": feature,
            "template_id": template,
            "difficulty": difficulty,
            "confidence": round(conf * MICRO) / MICRO,
            "confidence_band": band,
            "original_model": source,
            "proposed_model": target,
        }
        record: dict[str, Any] = {
            "messages": [*messages, {"role": "assistant", "content": answer}],
            "metadata": meta,
        }
        if tools is not None:
            record["tools"] = tools
        records.append(record)
        pair = []
        for model in (source, target):
            provider = providers.get(model, prov)
            labels.setdefault(model, _provider_id(provider, model))
            pair.append(model)
        tests.append(
            {
                "description": f"{feature or template or rid}: {source} -> {target} ({band})",
                "vars": {"messages": messages, "original_response": answer},
                "providers": pair,
                "assert": _asserts(answer),
                "metadata": meta,
            }
        )
    evalset = out / "evalset.jsonl"
    tests_file = out / "promptfoo" / "tests.jsonl"
    config = out / "promptfoo" / "promptfooconfig.yaml"
    evalset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    tests_file.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tests), "utf-8")
    document = {
        "description": "advisor tiering check: each routed request replayed on its original and "
        "its proposed model, compared with the original answer",
        "prompts": ["{{ messages | dump }}"],
        "providers": [{"id": labels[m], "label": m} for m in sorted(labels)],
        "tests": "file://tests.jsonl",
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    readme = out / "README.md"
    readme.write_text(_readme(len(records), redact), "utf-8")
    return [evalset, tests_file, config, readme]


def _readme(records: int, redacted: bool) -> str:
    note = REDACTED_NOTE if redacted else PRIVACY_NOTE
    return (
        "# advisor evaluation set\n\n"
        f"{records} requests the tiering router would move to a cheaper model, sampled per "
        "feature or template, route and confidence band, with the original model's answer.\n\n"
        "- `evalset.jsonl`: one chat record per request (`messages` ending with the original "
        "answer, `metadata`: route, difficulty, confidence)\n"
        "- `promptfoo/`: `promptfoo eval -c promptfoo/promptfooconfig.yaml` replays each request "
        "on its original and its proposed model and compares both with the original answer\n\n"
        f"**Privacy**: {note}.\n"
    )
