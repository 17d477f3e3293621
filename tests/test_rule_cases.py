"""Every rule in rules/ that carries `when` and `cases` runs its cases here: pass cases must match,
fail cases must not. Generic: a new rules file (batching, guardrails...) is covered as soon as its
rules use the condition language of advisor/conditions.py. Rules that carry a `pattern` (redaction,
the vocabulary filters of rules/difficulty.yaml) run theirs through advisor.redact, and the
`ordinary` texts of a redaction file must come out of the whole rule set unchanged. Rules that carry
a `transform` (rules/trimming.yaml) run their before/after cases through the trimming transforms.
Guardrail policies (rules/guardrails.yaml) replay their case histories through advisor.guard."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from advisor import lever_notes
from advisor.conditions import FeatureType, rules_with_cases, run_cases
from advisor.difficulty.features import FEATURE_TYPES
from advisor.guardrails import anomalies
from advisor.guardrails.policy import policy_rules, run_policy_cases
from advisor.levers import batching, streaming
from advisor.levers.output_caps.policy import FEATURES as OUTPUT_CAPS_FEATURES
from advisor.levers.tiering.calibration import FACTS as TIERING_QUALITY_FACTS
from advisor.levers.trimming.policy import ROW_FEATURES
from advisor.levers.trimming.transforms import run_transform_cases, transform_rules
from advisor.plausibility import FEATURES as PLAUSIBILITY_FEATURES
from advisor.redact import pattern_rules, redact, run_pattern_cases
from advisor.ruleset import default_rules_dir, read_yaml

RULES_DIR = default_rules_dir()
# Rules files whose features are known get their names and types checked too.
CATALOGUES: dict[str, Mapping[str, FeatureType]] = {
    "difficulty": FEATURE_TYPES,
    "plausibility": PLAUSIBILITY_FEATURES,
    "trimming_policy": ROW_FEATURES,
    "output_caps_policy": OUTPUT_CAPS_FEATURES,
    # eligibility rules read a feature row; the service-user rule reads a request's user id
    "batching": {**batching.FEATURE_TYPES, **batching.USER_FEATURES},
    "streaming": {**streaming.FEATURE_TYPES, **streaming.MODEL_FEATURES},
    # every kind's figures; the rules model checks each rule against its own kind's on load
    "anomalies": anomalies.FEATURES,
    "lever_notes": lever_notes.FEATURES,
    "tiering_quality": TIERING_QUALITY_FACTS,
}


def _collect() -> list[Any]:
    params = []
    for path in sorted(RULES_DIR.rglob("*.yaml")):
        data = read_yaml(path)
        for where, rule in rules_with_cases(data):
            rel = path.relative_to(RULES_DIR)
            params.append(
                pytest.param(path, data["kind"], rule, id=f"{rel}:{rule.get('id', where)}")
            )
        for rule in [*pattern_rules(data), *transform_rules(data), *policy_rules(data)]:
            rel = path.relative_to(RULES_DIR)
            params.append(pytest.param(path, data["kind"], rule, id=f"{rel}:{rule['id']}"))
    return params


CASES = _collect()


def test_there_are_rule_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize(("path", "kind", "rule"), CASES)
def test_rule_cases(path: Path, kind: str, rule: Mapping[str, Any]) -> None:
    if "pattern" in rule:
        failures: list[Any] = run_pattern_cases(rule)
    elif "transform" in rule:
        failures = run_transform_cases(rule, read_yaml(path)["min_duplicate_chars"])
    elif kind == "guardrails":  # request histories replayed through advisor.guard
        failures = run_policy_cases(rule)
    else:
        failures = run_cases(rule, CATALOGUES.get(kind))
    assert not failures, f"{path}:\n" + "\n".join(str(f) for f in failures)


def test_rule_ids_are_unique_per_kind() -> None:
    seen: dict[tuple[str, str], Path] = {}
    for param in CASES:
        path, kind, rule = param.values
        key = (kind, str(rule.get("id")))
        assert key not in seen, f"{key[1]} in {path} and {seen[key]}"
        seen[key] = path


ORDINARY = [
    pytest.param(text, id=f"{path.name}:ordinary[{i}]")
    for path in sorted(RULES_DIR.rglob("*.yaml"))
    for i, text in enumerate(read_yaml(path).get("ordinary") or [])
]


def test_there_is_ordinary_text() -> None:
    assert len(ORDINARY) >= 10


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_survives_redaction(text: str) -> None:
    assert redact(text) == text
