"""The router's vocabulary carries no text-derived secret or name: a word is exported as itself
only when many distinct users and many templates use it, it has the shape of a word, the redaction
rules never mask it and it is not written like a proper noun; a word that fails only the spread
travels as a salted hash. Planted secrets and names (in five or more requests of one user, or of
one template) appear in no export and not in analysis.json, while a common word shared across
users still reaches the router."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import openai_line, write_jsonl

from advisor import api
from advisor.errors import RuleError
from advisor.routing import word_hash
from advisor.ruleset import default_rules_dir

SYSTEMS = [
    "You label support tickets for a shop. Reply with one label.",
    "You triage e-mails for the billing team. Reply with one label.",
    "You sort product reviews for the catalogue team. Reply with one label.",
    "You route chat messages for the helpdesk. Reply with one label.",
]
USERS = [f"u_{i:02d}" for i in range(12)]
PLANTED = [
    "hunter2winter2026",  # a password, in 6 requests of one user
    "akiaiosfodnn7example",  # an AWS key id, same user
    "quibbleworth",  # a surname, in 6 requests of one user
    "zebulonia",  # a word in one template's system prompt, seen by every user
    "snorkelfax",  # a word one user keeps typing
]


def _line(i: int, user: str, system: str, text: str, **kw: Any) -> dict[str, Any]:
    return openai_line(
        f"r{i:04d}",
        ts=f"2026-10-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
        user_id=user,
        completion=kw.pop("completion", 2),
        messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
        **kw,
    )


def planted_log(path: Path) -> Path:
    rows, i = [], 0
    for user in USERS:
        for system in SYSTEMS:
            for text in (
                "Please classify this message about the warranty of my kettle.",
                "Classify the sentiment: the warranty claim took weeks.",
            ):
                rows.append(_line(i, user, system, text))
                i += 1
            rows.append(
                _line(
                    i,
                    user,
                    system,
                    "Summarize the attached report. " + "The quarter went well. " * 80,
                    completion=400,
                )
            )
            i += 1
    for k in range(6):  # one user, one template: a password, a key id, a surname, a pet word
        rows.append(
            _line(
                i,
                "u_leaky",
                SYSTEMS[0],
                f"Classify: my password Hunter2Winter2026 and key AKIAIOSFODNN7EXAMPLE stopped "
                f"working, says Quibbleworth. snorkelfax {k}",
            )
        )
        i += 1
    # a word of one template's prompt, seen by every user: lower case, and past the excerpts
    named = "You label orders for the shop. Reply with one label. " * 4 + "Ask zebulonia."
    for user in USERS:
        rows.append(_line(i, user, named, "Please classify this order about the warranty."))
        i += 1
    return write_jsonl(path, rows)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vocabulary")
    api.analyze([str(planted_log(folder / "logs.jsonl"))], out_dir=folder / "out")
    return folder / "out"


def _features(out: Path) -> set[str]:
    spec = yaml.safe_load((out / "router.yaml").read_text(encoding="utf-8"))
    return {f[0] for f in spec["classifier"]["features"]}


def test_planted_secrets_and_names_reach_no_output(analysed: Path) -> None:
    files = ["router.yaml", "litellm_config.yaml", "portkey.json", "analysis.json", "report.html"]
    assert all((analysed / name).is_file() for name in files)
    for name in files:
        text = (analysed / name).read_text(encoding="utf-8").lower()
        for planted in PLANTED:
            assert planted not in text, f"{planted} in {name}"


def test_common_words_still_route(analysed: Path) -> None:
    features = _features(analysed)
    words = {f[4:] for f in features if f.startswith("tok:")}
    assert {"warranty", "classify", "label"} <= words
    # words of one user or one template, with nothing else against them, travel as hashes only
    assert {f"tokh:{word_hash(w)}" for w in ("snorkelfax", "zebulonia")} <= features
    # a password, a key id and a capitalised surname travel in no form
    for word in ("hunter2winter2026", "akiaiosfodnn7example", "quibbleworth"):
        assert f"tokh:{word_hash(word)}" not in features
    analysis = json.loads((analysed / "analysis.json").read_text(encoding="utf-8"))
    tiering = next(lever for lever in analysis["levers"] if lever["id"] == "tiering")
    classifier = tiering["details"]["difficulty"]["classifier"]
    assert classifier["vocabulary"] == len(words)
    assert classifier["vocabulary_hashed"] >= 2 and classifier["vocabulary_withheld"] >= 3
    assert tiering["affected_requests"] > 0


def test_vocabulary_policy_is_required(tmp_path: Path) -> None:
    from advisor.difficulty.heuristics import load_vocabulary

    assert load_vocabulary(default_rules_dir()).min_users >= 2
    text = (default_rules_dir() / "difficulty.yaml").read_text(encoding="utf-8")
    (tmp_path / "difficulty.yaml").write_text(text.split("\nvocabulary:")[0], encoding="utf-8")
    with pytest.raises(RuleError, match="vocabulary"):
        load_vocabulary(tmp_path)
