"""Difficulty: features in DuckDB equal the runtime's, heuristics label what they should, the
classifier is seeded and exports plain JSON, and it scales (slow benchmark, not run in CI)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import anthropic_line, openai_line, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor import store
from advisor.conditions import evaluate
from advisor.difficulty import classify, load_classifier
from advisor.difficulty.classifier import _matrix, _register_vocab
from advisor.difficulty.features import FEATURES, build_features
from advisor.difficulty.heuristics import apply_rules, load_rules
from advisor.ingest import ingest
from advisor.routing import (
    CLASSIFIER_FORMAT,
    CUES,
    active_features,
    request_features,
    template_id,
    word_hash,
)
from advisor.ruleset import default_rules_dir

LONG = "Background. " * 400
SYSTEMS = [
    "Today is Monday, 2026-10-19 09:30 UTC. You classify helpdesk tickets. Return one label.",
    "You are writing on behalf of Maria Lopez (maria.lopez@acme.com). Polish the e-mail draft.",
    "İstanbul office: KELVIN ſ naïve café — summarise the document.",  # non-ASCII case folding
    "You are a senior engineer. Review this pull request.\n\n```diff\n+def x(a):\n```",
    "Answer using only the numbered context passages.\tQuestion:\r\nwhat? " + LONG,
    "",
    "You are a careful assistant. Write a function in Go that parses the input.",
    "Translate.",
]
USERS = [
    "Ticket #4411 Subject: Charged twice — I was billed $12.30 twice.",
    "hey Sofia, cant make Monday - can we do Friday 10am instead? sry",
    "Ünïcödé ÄÖÜ ß straße İIıi ǅ ﬁ " * 3,
    "diff --git a/x.py b/x.py\n+def load_order(self):\n+    return 1\n" * 20,
    "Find all real solutions of 2x^2 + (-6)x + (4) = 0 and verify them.",
    "x" * 30 + " " + "tok" * 12 + " ab1 A1 z9 " + LONG,
    "Tom has 3.5 apples, buys 1,200 more at $0.25 each. How many in total?\n- must be exact\n"
    "2) do NOT round\nWhich of the following?\nA. 1\nb) 2",
    "Переведите этот текст на английский, пожалуйста: спасибо за заказ № 12",
]


def _lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for i, (system, user) in enumerate(zip(SYSTEMS, USERS, strict=True)):
        lines.append(
            openai_line(
                f"o{i}",
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                feature=f"f{i}",
            )
        )
        line = anthropic_line(f"a{i}", output_tokens=3)
        line["request"]["system"] = [
            {"type": "text", "text": system[:20]},
            {"type": "text", "text": system[20:]},
        ]
        line["request"]["messages"] = [
            {"role": "user", "content": [{"type": "text", "text": user}, {"type": "image"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": user[::-1]}]},
        ]
        line["request"]["tools"] = [{"name": "lookup"}] * (i % 3)
        line["request"]["max_tokens"] = [5, 100, 4096, 20000, 1, 64, 300, 9][i]
        lines.append(line)
    lines.append(
        openai_line(
            "nosys",
            messages=[{"role": "user", "content": "Classify: good"}],
            response_format={"type": "json_object"},
        )
    )
    lines.append(
        openai_line(
            "dev",
            messages=[
                {"role": "developer", "content": SYSTEMS[0]},
                {"role": "user", "content": USERS[0]},
                {"role": "tool", "content": "{}"},
            ],
        )
    )
    return lines


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[dict[str, Any]]]]:
    lines = _lines()
    for line in lines:  # flattened body fields are read too
        if line["id"] == "nosys":
            line.update(line.pop("request"))
    con = store.connect(tmp_path / "s.duckdb")
    ingest(con, [str(write_jsonl(tmp_path / "s.jsonl", lines))])
    yield con, lines
    con.close()


def test_sql_features_equal_the_runtime_features(small: Any) -> None:
    con, lines = small
    build_features(con)
    cur = con.execute("SELECT * FROM dif_features ORDER BY request_id")
    names = [d[0] for d in cur.description]
    rows = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    assert len(rows) == len(lines)
    compared = [
        "template_id",
        "system_chars",
        "user_chars",
        "has_system",
        "message_count",
        "tools_count",
        "has_tools",
        "json_output",
        "max_tokens",
        "quantities",
        "constraints",
        "non_ascii",
        *(f"cue_{c}" for c in CUES),
    ]
    for line in lines:
        runtime = request_features(line)
        sql = rows[line["id"]]
        assert {k: sql[k] for k in compared} == {k: runtime[k] for k in compared}, line["id"]
    # the binary design matrix (tokens included) equals the runtime's active features
    con.execute(
        "CREATE TEMP TABLE _rows AS SELECT (row_number() OVER (ORDER BY request_id) - 1)"
        "::BIGINT AS rn, request_id FROM dif_features"
    )
    x, vocab = _matrix(con, "_rows", len(lines), None)
    order = [r[0] for r in con.execute("SELECT request_id FROM _rows ORDER BY rn").fetchall()]
    by_id = {line["id"]: line for line in lines}
    for i, rid in enumerate(order):
        sql_names = {vocab[j] for j in x.indices[x.indptr[i] : x.indptr[i + 1]]}
        runtime_names = active_features(request_features(by_id[rid]))
        assert sql_names == {n for n in runtime_names if not n.startswith("tokh:")}, rid
    # words the router carries as hashes are found by their hash in SQL as at run time
    hashed = sorted(f"tokh:{word_hash(n[4:])}" if n.startswith("tok:") else n for n in vocab)
    _register_vocab(con, hashed)
    x, _ = _matrix(con, "_rows", len(lines), "_dif_vocab")
    for i, rid in enumerate(order):
        sql_names = {hashed[j] for j in x.indices[x.indptr[i] : x.indptr[i + 1]]}
        runtime_names = active_features(request_features(by_id[rid]))
        assert sql_names == runtime_names & set(hashed), rid
    # given the plain words behind the hashes (as just after training), the same matrix
    words = {f"tokh:{word_hash(n[4:])}": n[4:] for n in vocab if n.startswith("tok:")}
    _register_vocab(con, hashed, words)
    plain, _ = _matrix(con, "_rows", len(lines), "_dif_vocab")
    assert (plain != x).nnz == 0 and (plain.indices == x.indices).all()


def test_template_ids_mask_what_varies() -> None:
    a = template_id("Today is Monday, 2026-10-19 09:30 UTC. Classify tickets for Acme.")
    b = template_id("Today is Friday, 2026-11-02 17:05 UTC. Classify tickets for Acme.")
    c = template_id("You write for Jo Lee (jo@x.io). Polish the draft.")
    d = template_id("You write for Samuel Mensah (samuel.mensah@acme-corp.com). Polish the draft.")
    assert a == b and c == d and a != c
    assert template_id(None) is None
    assert template_id("x" * 5000 + "tail") == template_id("x" * 5000 + "other tail")


def test_every_rule_feature_is_catalogued_and_guards_are_request_time() -> None:
    rules = load_rules(default_rules_dir())
    guards = {"DIF-001", "DIF-002", "DIF-003", "DIF-018", "DIF-019", "DIF-020"}
    assert {r.id for r in rules if r.guard} == guards
    assert all(FEATURES[name][1] for name in FEATURES if name.startswith("cue_"))


def _labelled(tmp_path: Path, lines: list[dict[str, Any]], sql: str) -> list[tuple[Any, ...]]:
    """Ingest the lines, compute the features, apply the default rules and run `sql`."""
    con = store.connect(tmp_path / "labels.duckdb")
    try:
        ingest(con, [str(write_jsonl(tmp_path / "labels.jsonl", lines))])
        build_features(con)
        apply_rules(con, load_rules(default_rules_dir()))
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_heuristics_label_the_obvious(tmp_path: Path) -> None:
    lines = [
        openai_line(
            "easy",
            completion=1,
            messages=[
                {
                    "role": "system",
                    "content": "Classify the sentiment. Answer with exactly one word.",
                },
                {"role": "user", "content": "Love it"},
            ],
            response_text="positive",
        ),
        openai_line("code", messages=[{"role": "user", "content": USERS[3] * 2}]),
        openai_line("maths", messages=[{"role": "user", "content": USERS[4]}]),
        openai_line(
            "thumbs",
            completion=1,
            feedback=-1,
            messages=[
                {
                    "role": "system",
                    "content": "Classify the sentiment. Answer with exactly one word.",
                },
                {"role": "user", "content": "Meh"},
            ],
        ),
        openai_line("none", messages=[{"role": "user", "content": "Tell me about the weather"}]),
    ]
    rows = _labelled(
        tmp_path, lines, "SELECT request_id, rule_label, guard_label, rules FROM dif_labels"
    )
    got = {r[0]: r[1:] for r in rows}
    assert got["easy"] == ("easy", None, ["DIF-006"])
    assert got["code"][:2] == ("hard", "hard") and "DIF-001" in got["code"][2]
    assert got["maths"][:2] == ("hard", "hard")
    assert got["thumbs"][0] == "medium"  # thumbs-down outranks the easy cue
    assert got["none"] == (None, None, [])


def test_a_prompt_regenerated_within_minutes_is_not_labelled_easy(tmp_path: Path) -> None:
    """DIF-021: the answer that made the user send the same prompt again is evidence; the last
    send, a send by someone else, a resend an hour on and a prompt re-run as a job are not."""

    def ask(city: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"Tell me about the weather in {city}"}]

    lines = [
        openai_line("first", user="u1", ts="2026-10-01T12:00:00Z", messages=ask("Oslo")),
        openai_line("again", user="u1", ts="2026-10-01T12:02:00Z", messages=ask("Oslo")),
        openai_line("other", user="u2", ts="2026-10-01T12:01:00Z", messages=ask("Oslo")),
        openai_line("early", user="u2", ts="2026-10-01T12:00:00Z", messages=ask("Rome")),
        openai_line("later", user="u2", ts="2026-10-01T13:00:00Z", messages=ask("Rome")),
        *(
            openai_line(f"job{i}", user="svc", ts=f"2026-10-01T12:0{i}:00Z", messages=ask("Bonn"))
            for i in range(5)
        ),
    ]
    rows = _labelled(
        tmp_path,
        lines,
        "SELECT request_id, rule_label, resent_after_s FROM dif_labels JOIN dif_features "
        "USING (request_id)",
    )
    got = {r[0]: r[1] for r in rows}
    resent = {r[0]: r[2] for r in rows}
    assert resent["first"] == 120 and resent["other"] is None and resent["early"] == 3600
    assert resent["job0"] == 60
    assert {rid: label for rid, label in got.items() if label} == {"first": "medium"}


def test_a_template_of_short_answers_is_easy_as_a_whole(tmp_path: Path) -> None:
    """DIF-022: a template whose answers are a few tokens, over enough requests, is easy; the
    same task with sentence-long answers, or with too few requests to judge, is not."""

    def line(rid: str, system: str, completion: int) -> dict[str, Any]:
        return openai_line(
            rid,
            completion=completion,
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": f"Stand-up note {rid}"},
            ],
        )

    lines = [line(f"short{i}", "Tag the stand-up note with its team.", 2) for i in range(20)]
    lines += [line(f"long{i}", "Reply to the stand-up note.", 40) for i in range(20)]
    lines += [line(f"few{i}", "Tag the note with its owner.", 2) for i in range(19)]
    rows = _labelled(tmp_path, lines, "SELECT request_id, rule_label, rules FROM dif_labels")
    got = {r[0]: r[1:] for r in rows}
    assert all(got[f"short{i}"] == ("easy", ["DIF-022"]) for i in range(20))
    assert all(got[f"long{i}"] == (None, []) for i in range(20))
    assert all(got[f"few{i}"] == (None, []) for i in range(19))


def _mixed_store(path: Path, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    lines = []
    for i in range(40):
        lines.append(
            openai_line(
                f"e{i}",
                completion=1,
                messages=[
                    {"role": "system", "content": "Classify the ticket. Return one label."},
                    {"role": "user", "content": f"Ticket {i}: my parcel is late"},
                ],
            )
        )
        lines.append(
            openai_line(
                f"m{i}",
                completion=90,
                messages=[
                    {"role": "system", "content": "Summarise the document for the digest."},
                    {"role": "user", "content": f"Report {i}. " + LONG[:2000]},
                ],
            )
        )
        lines.append(
            openai_line(
                f"u{i}",
                messages=[
                    {
                        "role": "user",
                        "content": f"Ticket {i}: where is my parcel? Return one label.",
                    }
                ],
            )
        )
    con = store.connect(path)
    ingest(con, [str(write_jsonl(tmp_path / f"{path.stem}.jsonl", lines))])
    return con


def test_classifier_is_seeded_and_exports_plain_json(tmp_path: Path) -> None:
    results = []
    for name in ("one", "two"):
        con = _mixed_store(tmp_path / f"{name}.duckdb", tmp_path)
        try:
            summary = classify(con, default_rules_dir(), seed=7).summary()
            model = load_classifier(con)
            table = con.execute("SELECT * FROM difficulty ORDER BY request_id").fetchall()
            raw = con.execute(
                "SELECT value FROM meta WHERE key = 'difficulty.classifier'"
            ).fetchall()
        finally:
            con.close()
        results.append((summary, model, table, raw))
    assert results[0] == results[1]
    summary, model, table, raw = results[0]
    assert model is not None and model["format"] == CLASSIFIER_FORMAT
    assert json.loads(raw[0][0]) == model  # plain JSON in the store: no pickle anywhere
    assert model["training"]["seed"] == 7 and model["training"]["trained_on"] > 0
    assert summary["by_difficulty"]["easy"] >= 80  # the unlabelled tickets generalise to easy
    reasons = {r[0]: r for r in table}
    assert reasons["u3"][4] == "easy" and "features" in reasons["u3"][-1]


def test_a_single_class_falls_back_to_a_prior(tmp_path: Path) -> None:
    lines = [
        openai_line(
            f"e{i}",
            completion=1,
            messages=[{"role": "user", "content": f"Classify: item {i}. Return one label."}],
        )
        for i in range(30)
    ]
    con = store.connect(tmp_path / "p.duckdb")
    try:
        ingest(con, [str(write_jsonl(tmp_path / "p.jsonl", lines))])
        result = classify(con, default_rules_dir())
    finally:
        con.close()
    assert result.training.fallback == "the rules found only one difficulty"
    assert result.by_difficulty == {"easy": 30}


@pytest.mark.slow
def test_scale_one_million_requests(tmp_path: Path) -> None:
    """Features + training + scoring on ~1M requests, as a ratio to a bare scan of their text.

    Replicates the sample store's requests with fresh ids (user texts made distinct), so the
    text work is real; run with `pytest -m slow -s tests/test_difficulty.py`.
    """
    traffic = Path(__file__).resolve().parents[1] / "sample_logs" / "traffic.jsonl.gz"
    con = store.connect(tmp_path / "big.duckdb")
    ingest(con, [str(traffic)])
    copies = 84  # ~12k x 84 = ~1M requests
    con.execute(
        f"""CREATE TEMP TABLE _k AS SELECT range AS k FROM range(1, {copies});
        INSERT INTO texts SELECT md5(t.text_hash || k), t.text || ' #' || k
            FROM texts t JOIN (SELECT DISTINCT text_hash FROM messages WHERE role = 'user') u
            USING (text_hash), _k;
        INSERT INTO messages SELECT m.request_id || '~' || k, m.position, m.role,
            CASE WHEN m.role = 'user' THEN md5(m.text_hash || k) ELSE m.text_hash END
            FROM messages m, _k;
        INSERT INTO requests SELECT r.* REPLACE (r.request_id || '~' || k AS request_id)
            FROM requests r, _k"""
    )
    n = con.execute("SELECT count(*) FROM requests").fetchall()[0][0]
    start = time.perf_counter()
    con.execute(
        "SELECT count(*), sum(length(t.text)) FROM messages m JOIN texts t USING (text_hash)"
    ).fetchall()
    scan = time.perf_counter() - start
    start = time.perf_counter()
    result = classify(con, default_rules_dir())
    work = time.perf_counter() - start
    con.close()
    print(
        f"\n{n} requests: bare scan {scan:.2f}s, classify {work:.2f}s, ratio {work / scan:.1f}x; "
        f"trained on {result.training.trained_on}"
    )
    assert result.requests == n


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 12))
def test_top_features_are_the_strongest_pushes_towards_the_class(seed, n_rows, n_cols) -> None:
    """The vectorised pick against a per-row reference: the (up to) three active features with
    the largest positive contribution to the predicted class, the smaller column on ties."""
    import numpy as np
    from scipy import sparse

    from advisor.difficulty.classifier import _Loaded, _top_features

    rng = np.random.default_rng(seed)
    dense = rng.random((n_rows, n_cols)) < 0.4
    x = sparse.csr_matrix(dense.astype(np.float64))
    contrib = rng.integers(-3, 4, size=(n_cols, 3)).astype(np.float64)  # ties are common
    names = np.array([f"f{i:02d}" for i in range(n_cols)], dtype=object)
    m = _Loaded(names, np.arange(n_cols), contrib, np.zeros(3), 1.0, contrib)
    best = rng.integers(0, 3, size=n_rows)
    got = _top_features(x, best, m).to_pylist()
    for row in range(n_rows):
        active = [c for c in range(n_cols) if dense[row, c] and contrib[c, best[row]] > 0]
        want = sorted(active, key=lambda c: (-contrib[c, best[row]], c))[:3]
        assert got[row] == [names[c] for c in want]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 10), st.integers(1, 3))
def test_the_design_matrix_union_is_the_pattern_of_the_sum(seed, n_rows, n_cols, n_parts) -> None:
    """_union (one pass) against adding the matrices: same columns per row, each once, sorted."""
    import numpy as np
    from scipy import sparse

    from advisor.difficulty.classifier import _union

    rng = np.random.default_rng(seed)
    parts = [
        sparse.csr_matrix((rng.random((n_rows, n_cols)) < 0.3).astype(np.float64))
        for _ in range(n_parts)
    ]
    got = _union(parts, n_cols)
    want = sparse.csr_matrix(sum(parts[1:], parts[0]))
    want.sum_duplicates()
    want.sort_indices()
    assert (got.indptr == want.indptr).all() and (got.indices == want.indices).all()
    assert got.has_sorted_indices


NOT_EASY = {
    "word problem": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
    "many clips in May. How many clips did Natalia sell altogether in April and May?",
    "word problem, money": "A bakery sells muffins at $3 each and cookies at $1.50 each. On Monday "
    "it sold 24 muffins and 40 cookies. What is the total revenue for Monday?",
    "word problem, rates": "A train travels 180 miles in 3 hours. At the same speed, how long will "
    "it take to travel 300 miles?",
    "code, plain words": "Write a function that takes a list of intervals and merges the "
    "overlapping ones, then returns them sorted by start.",
    "code, snippet": "Why does this raise?\n```\nfor k in d: del d[k]\n```",
    "code, sql": "Write the SQL to find the three customers with the highest total order value "
    "last quarter.",
    "multi-constraint": "Plan a 5-day trip to Lisbon for 2 adults.\n- stay under 1500 EUR\n"
    "- at least one day trip by train\n- no museum on Monday\n- every dinner must be vegetarian",
    "reasoning over data": "Think step by step: a store had 120 items, sold 45 on day one and 30 "
    "on day two. Which day saw the larger share of the remaining stock sold?",
}


@pytest.mark.parametrize("kind", sorted(NOT_EASY))
def test_math_word_problems_code_and_constraints_are_not_easy_by_default(kind: str) -> None:
    """A guard (request-time, also run by the router) keeps each from a cheaper tier."""
    feats = request_features(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": NOT_EASY[kind]}]}
    )
    guards = [r for r in load_rules(default_rules_dir()) if r.guard]
    matched = [r for r in guards if evaluate(r.when, feats)]
    assert matched, (kind, {k: v for k, v in feats.items() if v and k.startswith("cue_")})
    assert all(r.label != "easy" for r in matched)


def test_a_classification_request_is_not_caught_by_the_new_guards() -> None:
    feats = request_features(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Sentiment of: great food"}]}
    )
    assert not [r for r in load_rules(default_rules_dir()) if r.guard and evaluate(r.when, feats)]
