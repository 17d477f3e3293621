"""Why a lever saved nothing: facts about the logs and the lever's run, matched against the notes
of rules/lever_notes.yaml, so that a zero-saving run says what is missing and what to log.

A lever whose standalone saving is zero (or less) gets the first note, in file order, that names
it and whose condition holds on its facts; each lever has a catch-all note last. Facts are counts
from the store (requests with prompt text, with a feature, with a user id, priced) and figures
from the lever's own details (what it replayed, measured or routed); a fact the lever does not
report is missing, and a comparison with a missing fact is false (advisor/conditions.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from advisor import conditions, store
from advisor.conditions import Condition, FeatureType
from advisor.errors import RuleError
from advisor.levers import registry
from advisor.levers.base import LeverContext, LeverNote
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model, rule_files
from advisor.simulate import LeverRun

# Every fact a note may test, with its type (checked on load and by tests/test_rule_cases.py).
FEATURES: dict[str, FeatureType] = {
    # the store, for every lever
    "requests": "number",
    "priced_requests": "number",
    "text_requests": "number",  # requests logged with some prompt text
    "feature_requests": "number",  # requests logged with a feature name
    "user_requests": "number",  # requests logged with a user id
    "max_tokens_requests": "number",  # requests logged with max_tokens
    # tiering
    "laddered_requests": "number",  # on a model that is on a tier ladder (rules/tiers.yaml)
    "cheaper_tier_requests": "number",  # on a model with a cheaper tier to route to
    "easy_requests": "number",  # classified easy or medium
    "routed_requests": "number",
    # trimming
    "candidate_texts": "number",  # distinct texts the trimming pre-filter passed
    # output caps
    "cap_requests": "number",  # successful requests with a feature: the caps' groups
    "capped_groups": "number",  # groups with enough requests for a cap
    # caching
    "replayed_requests": "number",
    "below_minimum_requests": "number",  # replayed, but shorter than the cache minimum
    "achieved_cache_tokens": "number",  # cached reads the logs already show
    "cache_gap_tokens": "number",  # cached reads the replay finds beyond the logged ones
    # batching
    "features_measured": "number",
    "eligible_requests": "number",  # batch-eligible under the lenient rules
    "already_batch_requests": "number",
}


class NoteCases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pass_: tuple[dict[str, Any], ...] = Field(alias="pass", min_length=1)
    fail: tuple[dict[str, Any], ...] = ()


class NoteRule(ConditionRule):
    FEATURES = FEATURES
    id: str = Field(pattern=r"^NOTE-\d{3}$")
    levers: tuple[str, ...] = Field(min_length=1)
    reason: str
    fix: str | None = None
    deprecated: bool = False
    cases: NoteCases  # type: ignore[assignment]  # typed here: every note has a passing case

    @field_validator("levers")
    @classmethod
    def _known_levers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(registry.ALL_IDS))
        if unknown:
            raise ValueError(f"unknown lever ids {unknown}; levers: {', '.join(registry.ALL_IDS)}")
        return value


class NotesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["lever_notes"]
    title: str | None = None
    notes: tuple[NoteRule, ...]


def load_notes(rules_dir: Path) -> list[tuple[NoteRule, Condition]]:
    """Every active note under `rules_dir`, in file order, with its parsed condition."""
    notes: list[tuple[NoteRule, Condition]] = []
    seen: dict[str, Path] = {}
    for path in rule_files(rules_dir, "lever_notes"):
        for note in load_model(path, NotesFile).notes:
            if note.id in seen:
                raise RuleError(f"{path}: note id {note.id} is already used in {seen[note.id]}")
            seen[note.id] = path
            if not note.deprecated:
                notes.append((note, note.condition))
    return notes


def store_facts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """What the logs hold, for every lever: counts of requests with each kind of field."""
    row = con.execute(
        """SELECT count(*), count(model_key), count(feature), count(user_id), count(max_tokens),
                  (SELECT count(DISTINCT m.request_id) FROM messages m JOIN texts t
                   USING (text_hash) WHERE m.role <> 'tools' AND length(t.text) > 0)
           FROM requests"""
    ).fetchall()[0]
    names = (
        "requests",
        "priced_requests",
        "feature_requests",
        "user_requests",
        "max_tokens_requests",
        "text_requests",
    )
    return {name: int(value) for name, value in zip(names, row, strict=True)}


def _tier_facts(ctx: LeverContext, details: Any) -> dict[str, Any]:
    from advisor.levers.tiering import load_tiers

    tiers = load_tiers(ctx.rules_dir, ctx.prices)
    laddered, cheaper = (
        int(store.scalar(ctx.con, f"SELECT count(*) FROM requests WHERE model_key IN ({keys})"))
        if keys
        else 0
        for keys in (_sql_list(tiers.ranks), _sql_list(tiers.targets))
    )
    by_difficulty = details.difficulty.by_difficulty if details.difficulty else {}
    return {
        "laddered_requests": laddered,
        "cheaper_tier_requests": cheaper,
        "easy_requests": by_difficulty.get("easy", 0) + by_difficulty.get("medium", 0),
        "routed_requests": details.operating_point.requests_routed,
    }


def _sql_list(keys: Mapping[str, Any]) -> str:
    return ", ".join(conditions.sql_literal(k) for k in sorted(keys))


def lever_facts(ctx: LeverContext, run: LeverRun) -> dict[str, Any]:
    """The figures of one lever's run that its notes test (none for a lever without notes)."""
    d: Any = run.findings.details
    if run.id == "tiering":
        return _tier_facts(ctx, d)
    if run.id == "trimming":
        return {"candidate_texts": d.totals.candidate_texts}
    if run.id == "output_caps":
        return {
            "cap_requests": d.requests_read,
            "capped_groups": sum(1 for row in d.features if row.cap is not None),
        }
    if run.id == "caching":
        return {
            "replayed_requests": d.replay.replayed_requests,
            "below_minimum_requests": sum(row.below_minimum for row in d.by_feature),
            "achieved_cache_tokens": d.achieved.cache_read_tokens,
            "cache_gap_tokens": d.achievable.cache_read_tokens - d.achieved.cache_read_tokens,
        }
    if run.id == "batching":
        return {
            "features_measured": d.features_measured,
            "eligible_requests": d.range.lenient_requests,
            "already_batch_requests": d.already_batch_requests,
        }
    return {}


def explain(
    notes: Sequence[tuple[NoteRule, Condition]], lever_id: str, facts: Mapping[str, Any]
) -> LeverNote | None:
    """The first note for `lever_id` whose condition holds on `facts`."""
    for note, cond in notes:
        if lever_id in note.levers and conditions.evaluate(cond, facts):
            return LeverNote(id=note.id, reason=note.reason, fix=note.fix)
    return None


def why_not(ctx: LeverContext, runs: Sequence[LeverRun]) -> dict[str, LeverNote]:
    """A note per lever that saved nothing, by lever id (levers that saved something: none)."""
    idle = [run for run in runs if run.standalone_saving <= Decimal(0)]
    if not idle:
        return {}
    notes = load_notes(ctx.rules_dir)
    facts = store_facts(ctx.con)
    found = {run.id: explain(notes, run.id, {**facts, **lever_facts(ctx, run)}) for run in idle}
    return {lever_id: note for lever_id, note in found.items() if note is not None}
