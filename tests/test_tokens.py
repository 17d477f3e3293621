"""Token filling: tiktoken when its encoding is on disk, calibrated estimates when not."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import openai_line, write_jsonl

from advisor import tokens
from advisor.ingest import ingest

ENCODINGS = {"gpt-4o": "o200k_base", "gpt-4": "cl100k_base", "claude-sonnet-4-5": "approx"}


def _no_usage(rid: str, text: str, model: str = "gpt-4o", answer: str = "Fine, thanks.") -> dict:
    line = openai_line(rid, model=model, prompt=None, response_text=answer,
                       messages=[{"role": "user", "content": text}])  # fmt: skip
    return line


def _ingest(con, tmp_path: Path, rows: list) -> None:
    ingest(con, [str(write_jsonl(tmp_path / "a.jsonl", rows))])
    con.execute("UPDATE requests SET model_key = model")


def test_counts_with_the_model_encoding(con, tmp_path: Path, needs_tiktoken) -> None:
    import tiktoken

    text = "How many tokens does this sentence have, exactly?"
    _ingest(con, tmp_path, [_no_usage("a", text), _no_usage("b", text, model="gpt-4")])
    fill = tokens.fill_token_counts(con, ENCODINGS)
    assert (fill.tokenized, fill.estimated) == (2, 0)
    got = dict(con.execute("SELECT request_id, input_tokens FROM requests").fetchall())
    for rid, enc in (("a", "o200k_base"), ("b", "cl100k_base")):
        expected = len(tiktoken.get_encoding(enc).encode(text)) + 3 + 3
        assert got[rid] == expected
    out = con.execute("SELECT output_tokens, token_source FROM requests WHERE request_id='a'")
    assert out.fetchone() == (len(tiktoken.get_encoding("o200k_base").encode("Fine, thanks.")),
                              "tokenized")  # fmt: skip


def test_each_distinct_text_is_counted_once(con, tmp_path: Path, needs_tiktoken) -> None:
    rows = [_no_usage(f"r{i}", "the same question") for i in range(50)]
    _ingest(con, tmp_path, rows)
    tokens.fill_token_counts(con, ENCODINGS)
    assert con.execute("SELECT count(*) FROM text_tokens").fetchone() == (2,)


def test_other_providers_are_marked_estimated(con, tmp_path: Path, needs_tiktoken) -> None:
    _ingest(con, tmp_path, [_no_usage("c", "Bonjour", model="claude-sonnet-4-5")])
    fill = tokens.fill_token_counts(con, ENCODINGS)
    assert fill.estimated == 1
    row = con.execute("SELECT token_source FROM requests").fetchone()
    assert row == ("estimated",)


def test_without_tokenizer_estimates_and_calibrates(con, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADVISOR_TOKENIZER", "estimate")
    tokens.get_encoding.cache_clear()
    text = "word " * 400  # 2000 bytes: 500 tokens by the length rule
    # Logged rows with the same shape of text say the truth is ~2x the length rule.
    logged = [
        openai_line(f"l{i}", prompt=1012, messages=[{"role": "user", "content": text}])
        for i in range(30)
    ]
    _ingest(con, tmp_path, [*logged, _no_usage("x", text)])
    fill = tokens.fill_token_counts(con, ENCODINGS)
    tokens.get_encoding.cache_clear()
    assert fill.estimated == 1 and fill.tokenized == 0
    assert fill.calibration == pytest.approx(1012 / 506, rel=1e-6)
    inp, source = con.execute(
        "SELECT input_tokens, token_source FROM requests WHERE request_id = 'x'"
    ).fetchone()
    assert source == "estimated"
    assert inp == pytest.approx(1012, rel=0.01)


def test_failed_calls_without_usage_are_unbilled(con, tmp_path: Path) -> None:
    line = _no_usage("e", "hello")
    line["response"] = None
    line["error"] = {"type": "rate_limit"}
    _ingest(con, tmp_path, [line])
    fill = tokens.fill_token_counts(con, ENCODINGS)
    assert fill.unbilled == 1
    row = con.execute("SELECT input_tokens, output_tokens, token_source, status FROM requests")
    assert row.fetchone() == (0, 0, "unbilled", "error")


def test_encoding_never_downloads(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "_cache_dirs", lambda: [tmp_path])
    tokens.get_encoding.cache_clear()
    assert tokens.get_encoding("o200k_base") is None
    assert tokens.count_texts(["hi"]) is None
    tokens.get_encoding.cache_clear()
