"""Zero-saving levers explain themselves (rules/lever_notes.yaml, advisor/lever_notes.py), and a
run whose tiering routes nothing writes no empty router config or evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import openai_line, write_jsonl

from advisor import api, lever_notes
from advisor.errors import AdvisorError, RuleError
from advisor.levers import registry
from advisor.redact import redact
from advisor.ruleset import default_rules_dir

NOTES = lever_notes.load_notes(default_rules_dir())
# What a token-only trace holds: counts and times, no text, feature or user.
TOKEN_ONLY = {
    "requests": 60,
    "priced_requests": 60,
    "text_requests": 0,
    "feature_requests": 0,
    "user_requests": 0,
    "max_tokens_requests": 0,
}


def _explained(facts: dict[str, int]) -> dict[str, str | None]:
    found = {lever: lever_notes.explain(NOTES, lever, facts) for lever in registry.ALL_IDS}
    return {lever: note.id if note else None for lever, note in found.items()}


def test_a_token_only_log_says_what_is_missing() -> None:
    assert _explained(TOKEN_ONLY) == {
        "tiering": "NOTE-002",
        "trimming": "NOTE-002",
        "output_caps": "NOTE-003",
        "caching": "NOTE-002",
        "batching": "NOTE-003",
    }


def test_nothing_priced_comes_first() -> None:
    assert set(_explained({**TOKEN_ONLY, "priced_requests": 0}).values()) == {"NOTE-001"}


def test_tiering_on_the_cheapest_tier() -> None:
    facts = {**TOKEN_ONLY, "text_requests": 60, "laddered_requests": 60}
    assert _explained({**facts, "cheaper_tier_requests": 0})["tiering"] == "NOTE-011"
    assert _explained({**facts, "laddered_requests": 0})["tiering"] == "NOTE-010"


def test_every_lever_has_a_catch_all() -> None:
    assert all(_explained({"requests": 5}).values())


def test_notes_survive_redaction() -> None:
    """analysis.json is redacted as a whole: a note's words must come out unchanged."""
    for note, _ in NOTES:
        for text in (note.reason, note.fix or ""):
            assert redact(text) == text, note.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("levers: [tiering]", "unknown lever"),
        ("feature: text_requests", "unknown feature"),
    ],
)
def test_a_broken_notes_file_is_refused(tmp_path: Path, change: str, message: str) -> None:
    text = (default_rules_dir() / "lever_notes.yaml").read_text(encoding="utf-8")
    broken = {
        "levers: [tiering]": ("levers: [tiering]", "levers: [tierng]"),
        "feature: text_requests": ("feature: text_requests", "feature: prompt_text"),
    }[change]
    (tmp_path / "lever_notes.yaml").write_text(text.replace(*broken, 1), encoding="utf-8")
    with pytest.raises(RuleError, match=message):
        lever_notes.load_notes(tmp_path)


def _token_only_csv(path: Path, rows: int = 60) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [
        f"2023-11-16 18:{i // 60:02d}:{i % 60:02d}.000,{900 + i},{200 + i}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _assert_explained_without_artefacts(result: api.AnalyzeResult) -> None:
    notes = {lever.id: lever.why_not for lever in result.analysis.levers}
    assert all(lever.standalone_saving == 0 for lever in result.analysis.levers)
    assert {k: n.id if n else None for k, n in notes.items()} == _explained(TOKEN_ONLY)
    for name in (*api.ROUTER_FILES.values(), api.EVALSET_DIR):
        assert not (result.out_dir / name).exists()
    assert set(result.skipped) == {*api.ROUTER_FILES.values(), api.EVALSET_DIR + "/"}
    assert all("no prompt text" in why for why in result.skipped.values())


def test_a_token_only_csv_explains_itself_and_writes_no_empty_export(tmp_path: Path) -> None:
    log = _token_only_csv(tmp_path / "trace.csv")
    result = api.analyze([str(log)], out_dir=tmp_path / "out", model="gpt-4o")
    _assert_explained_without_artefacts(result)
    saved = api.load_analysis(result.files["analysis"])
    assert [lever.why_not for lever in saved.levers] == [
        lever.why_not for lever in result.analysis.levers
    ]


def test_prompts_on_the_cheapest_tier(tmp_path: Path) -> None:
    rows = [
        openai_line(f"r{i}", model="gpt-4o-mini", ts=f"2026-10-01T12:{i:02d}:00Z")
        for i in range(30)
    ]
    result = api.analyze([str(write_jsonl(tmp_path / "log.jsonl", rows))], out_dir=tmp_path / "out")
    tiering = result.analysis.levers[0]
    assert tiering.id == "tiering" and tiering.why_not is not None
    assert tiering.why_not.id == "NOTE-011"
    assert "routes no request" in result.skipped["router.yaml"]


def test_azure_trace_says_why_per_lever(shared_data: Path, tmp_path: Path) -> None:
    trace = shared_data / "real" / "AzureLLMInferenceTrace_conv.csv"
    result = api.analyze([str(trace)], out_dir=tmp_path, model="gpt-4o")
    _assert_explained_without_artefacts(result)


def test_export_evalset_refuses_when_nothing_is_routed(tmp_path: Path) -> None:
    log = _token_only_csv(tmp_path / "trace.csv")
    result = api.analyze([str(log)], out_dir=tmp_path / "out", model="gpt-4o", write_report=False)
    with pytest.raises(AdvisorError, match="no evaluation set"):
        api.export_evalset(result.files["db"], tmp_path / "evalset")
    assert not (tmp_path / "evalset").exists()
