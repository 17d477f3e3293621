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


def test_the_schema_describes_every_levers_details() -> None:
    """levers[] is a union told apart by id: each lever's details and risk are typed objects,
    with no free-form (additionalProperties) hole where most of the content lives."""
    schema = json_schema()
    defs = schema["$defs"]
    levers = schema["properties"]["levers"]["items"]
    assert levers["discriminator"]["propertyName"] == "id"
    ids = set(levers["discriminator"]["mapping"])
    assert {"tiering", "caching"} <= ids
    for ref in levers["discriminator"]["mapping"].values():
        result = defs[ref.split("/")[-1]]
        for part in ("details", "risk"):
            model = defs[result["properties"][part]["$ref"].split("/")[-1]]
            assert model.get("additionalProperties") is False, (ref, part)
            assert model["properties"], (ref, part)
    assert defs["Combined"]["properties"]["cost"]["anyOf"][1] == {"type": "null"}
    assert SCHEMA_VERSION == "2.3"  # 2.3: tiering calibration held out, misroute intervals, sample
