"""analysis.json's JSON Schema is generated from the models, committed, and checked for drift."""

from __future__ import annotations

import json
from pathlib import Path

from advisor.analysis import SCHEMA_VERSION, json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "advisor" / "analysis.schema.json"


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json_schema(), (
        "analysis.json models changed: regenerate advisor/analysis.schema.json with "
        "python -c 'import json; from advisor.analysis import json_schema; "
        "print(json.dumps(json_schema(), indent=2, sort_keys=True))' > advisor/analysis.schema.json"
        f" and bump SCHEMA_VERSION (now {SCHEMA_VERSION}) if the change is not additive"
    )
