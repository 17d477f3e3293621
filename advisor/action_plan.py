"""The action plan and the unit economics of analysis.json: the combined saving split into changes.

`simulate` records each lever's chained step per request (`sim_steps`: cost before and after the
step). Each lever's marginal saving is split here by the feature it changes: one row per (lever,
feature), its saving the sum of the step's cost drops over that feature's requests. The rows sum
to each lever's marginal saving, and the marginal savings to the combined saving, so the plan
(rows + other) adds up to the combined saving exactly. Each row names the setting to change,
taken from the lever's details, and a risk level (rules/action_plan.yaml). Unit economics is the
baseline (`costs`) against the combined counterfactual (`sim_final`) per feature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from advisor import analysis as A
from advisor.conditions import FeatureType, evaluate
from advisor.levers.batching import BatchingResult
from advisor.levers.caching.models import CachingResult
from advisor.levers.output_caps.models import OutputCapsResult
from advisor.levers.tiering.calibration import misroute_interval
from advisor.levers.tiering.models import TieringResult
from advisor.levers.trimming.models import TrimmingResult
from advisor.rule_model import ConditionRule
from advisor.ruleset import load_model

RULES_FILE = "action_plan.yaml"
NO_FEATURE = "(no feature)"  # the scope of requests logged without a feature
MONTH_DAYS = Decimal(30)
PLACES = Decimal("1e-10")  # of a figure made by a division: its 28 digits are not exact anyway
ROW_FEATURES: dict[str, FeatureType] = {
    "saving_per_month": "number",
    "share_of_total": "number",
    "misroute_share": "number",
    "truncated_share": "number",
    "reasoning_cut_share": "number",
}


class _Rule(ConditionRule):
    FEATURES = ROW_FEATURES


class RiskRule(_Rule):
    level: Literal["high", "medium"]


class PlanRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["action_plan"]
    title: str
    minimum: _Rule
    risk: tuple[RiskRule, ...]

    def thresholds(self) -> tuple[Decimal, Decimal]:
        """(USD a month, share of the total) the minimum rule compares with: its `when` is the
        one place they are written."""
        found = {c["feature"]: Decimal(str(c["value"])) for c in self.minimum.when["all"]}
        return found["saving_per_month"], found["share_of_total"]


def load_rules(rules_dir: Path) -> PlanRules:
    return load_model(rules_dir / RULES_FILE, PlanRules)


@dataclass(frozen=True)
class Change:
    """What a row asks for: the setting, its rule, the work and what its risk is judged on."""

    text: str
    rule: str | None
    effort: str  # config | prompt edit | code
    reason: str  # why the risk is what it is
    figures: dict[str, Any] = field(default_factory=dict)  # ROW_FEATURES the risk rules read


Changes = dict[str | None, Change]  # per feature (None: requests without one)

INTERACTIONS = {
    "tiering": "Tiering runs first: every later row is priced on the routed model, so its "
    "saving is smaller than the same change on the logged model.",
    "trimming": "Trimming and output caps are priced after routing; caching then replays the "
    "trimmed prompts, so a trim in a cached prefix saves only the cached rate.",
    "caching": "Caching is replayed on the trimmed, routed prompts and charges the cache warm-up "
    "on a new model: routing to a cheaper model lowers what caching saves.",
    "batching": "Batching is a price multiplier applied last, on top of the cache discounts "
    "where the provider allows both: it saves less on requests already made cheaper above.",
}


def month(amount: Decimal, days: float) -> Decimal:
    """`amount` over `days` normalised to 30 days; a period under a day counts as one day (a
    single request or a burst says nothing about a month beyond itself)."""
    return (amount * MONTH_DAYS / max(Decimal(str(days)), Decimal(1))).quantize(PLACES)


def build_action_plan(
    con: duckdb.DuckDBPyConnection,
    levers: list[A.LeverResult],
    combined: A.Combined,
    period: A.Period,
    rules_dir: Path,
) -> A.ActionPlan:
    """The plan from `sim_steps`: one row per (lever, feature) at or above the minimum rule,
    the rest summed into `other`; rows + other == combined.saving."""
    rules = load_rules(rules_dir)
    floor_month, floor_share = rules.thresholds()
    total = combined.saving
    days = max(Decimal(str(period.days)), Decimal(1))
    minimum = max(floor_month * days / MONTH_DAYS, floor_share * total).quantize(PLACES)
    changes = {lever.id: _CHANGES[lever.id](con, lever) for lever in levers}
    order: dict[str, int] = {lever.id: i for i, lever in enumerate(levers)}
    rows: list[A.ActionRow] = []
    other, other_changes = Decimal(0), 0
    for lever_id, feature, saving, requests in _steps(con):
        saving = Decimal(saving)
        per_month = month(saving, period.days)
        figures = {
            "saving_per_month": per_month,
            "share_of_total": float(saving / total) if total > 0 else 0.0,
        }
        if not evaluate(rules.minimum.condition, figures):
            other += saving
            other_changes += 1
            continue
        change = changes.get(lever_id, {}).get(feature) or _fallback(lever_id, feature)
        risk = next(
            (r for r in rules.risk if evaluate(r.condition, change.figures)), None
        )  # the first that matches; none: low
        scope = feature if feature is not None else NO_FEATURE
        rows.append(
            A.ActionRow(
                id=f"{lever_id}:{scope}",
                lever=lever_id,
                scope=scope,
                change=change.text,
                saving=saving,
                saving_per_month=per_month,
                requests=int(requests),
                risk=risk.level if risk else "low",
                risk_reason=f"{risk.title}: {change.reason}" if risk else change.reason,
                effort=change.effort,
                rule=change.rule,
            )
        )
    rows.sort(key=lambda r: (-r.saving, order.get(r.lever, len(order)), r.scope))
    shown = {r.lever for r in rows}
    return A.ActionPlan(
        rows=rows,
        other=other,
        other_changes=other_changes,
        total=total,
        total_per_month=month(total, period.days),
        period_days=period.days,
        minimum=minimum,
        interactions=[text for lever_id, text in INTERACTIONS.items() if lever_id in shown]
        if len(shown) > 1
        else [],
    )


def _steps(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """(lever, feature, saving, requests) per (lever, feature) the chained steps changed; an
    unpriced cost counts as 0 in the saving, as `simulate.state_cost` sums it, so the sums stay
    exact; `requests` counts only the priced requests the step made cheaper."""
    return con.execute(
        """SELECT s.lever, r.feature,
                  sum(coalesce(s.cost_before, 0) - coalesce(s.cost_after, 0)) AS saving,
                  count(*) FILTER (WHERE s.cost_after < s.cost_before)
           FROM sim_steps s JOIN requests r USING (request_id)
           GROUP BY ALL ORDER BY 1, 2 NULLS LAST"""
    ).fetchall()


def _fallback(lever_id: str, feature: str | None) -> Change:
    """A (lever, feature) the lever's details do not list (they keep the largest rows)."""
    return Change(
        text=f"apply the {lever_id.replace('_', ' ')} policy to {feature or NO_FEATURE} (see "
        "the lever's section)",
        rule=None,
        effort="config",
        reason="the lever's details do not list this feature",
    )


def _tiering(con: duckdb.DuckDBPyConnection, lever: Any) -> Changes:
    result: TieringResult = lever
    op = result.details.operating_point
    rows = con.execute(
        """SELECT feature,
                  array_to_string(list_sort(list(DISTINCT model_key || ' to ' || routed_model)),
                                  ', '),
                  count(*), sum(1 - confidence), sum(confidence * (1 - confidence))
           FROM lever_tiering WHERE routed GROUP BY ALL"""
    ).fetchall()
    level = result.risk.misroute_interval
    return {
        feature: Change(
            text=f"route {', '.join(op.route)} requests (classifier confidence at least "
            f"{op.min_confidence:g}) from {pairs} via the exported router "
            "(`advisor export router`)",
            rule=op.policy,
            effort="config",
            # the classifier's own estimate, not a measurement: the reason says which it is
            reason=f"quality not measured yet: the classifier itself expects {misroutes:.0f} "
            f"({low:.0f} to {high:.0f}, {level:.0%} interval) of {n:,} routed requests to need "
            "the larger model; measure with `advisor export evalset`, then `advisor tiering "
            "calibrate`",
            figures={"misroute_share": misroutes / n},
        )
        for feature, pairs, n, misroutes, variance in rows
        for low, high in [misroute_interval(misroutes, variance, level)]
    }


TRIM_EDITS = {
    "pretty_json": "serialise the JSON in the prompt minified (no indentation)",
    "duplicates": "keep one copy of the repeated paragraph",
    "duplicate_messages": "send a repeated message once",
    "whitespace": "normalise whitespace (trailing spaces, blank-line runs)",
    "markdown_rules": "drop decorative markdown rules",
}


def _trimming(con: duckdb.DuckDBPyConnection, lever: Any) -> Changes:
    result: TrimmingResult = lever
    kinds: dict[str | None, list[str]] = {}
    for row in result.details.rows:
        kinds.setdefault(row.feature, []).extend(row.kinds)
    return {
        feature: Change(
            text="; ".join(TRIM_EDITS.get(k, k) for k in dict.fromkeys(found)),
            rule=result.details.policy,
            effort="prompt edit",
            reason=result.risk.why,
        )
        for feature, found in kinds.items()
    }


def _output_caps(con: duckdb.DuckDBPyConnection, lever: Any) -> Changes:
    result: OutputCapsResult = lever
    found: dict[str | None, list[tuple[Decimal, str, str | None]]] = {}
    cut: dict[str | None, list[int]] = {}
    reasoned: dict[str | None, float] = {}
    for cap in result.details.features:
        if cap.applied:
            where = f" (system prompt {cap.template_excerpt})" if cap.template_excerpt else ""
            found.setdefault(cap.feature, []).append(
                (cap.saving, f"{cap.parameter}: {cap.setting}{where}", cap.rule)
            )
            n = cut.setdefault(cap.feature, [0, 0])
            n[0], n[1] = n[0] + cap.truncated_requests, n[1] + cap.requests
    for r in result.details.reasoning:
        if r.applied:
            found.setdefault(r.feature, []).append((r.saving, f"{r.setting} on {r.model}", r.rule))
            reasoned[r.feature] = max(reasoned.get(r.feature, 0.0), r.above_budget_share)
    changes: Changes = {}
    for feature, settings in found.items():
        settings.sort(key=lambda s: (-s[0], s[1]))
        truncated, capped = cut.get(feature, [0, 0])
        figures = {"truncated_share": truncated / capped if capped else 0.0}
        reason = f"the cap would have cut {truncated:,} of {capped:,} answers"
        if feature in reasoned:
            figures["reasoning_cut_share"] = reasoned[feature]
            reason += f"; {reasoned[feature]:.0%} of requests reasoned more than the budget"
        changes[feature] = Change(
            text="; ".join(s[1] for s in settings),
            rule=settings[0][2],
            effort="config",
            reason=reason if capped else reason.split("; ", 1)[-1],
            figures=figures,
        )
    return changes


CACHE_SETTINGS = {
    ("1h", "explicit"): "`cache_control: {type: ephemeral, ttl: 1h}` breakpoint after the "
    "stable prefix",
    ("default", "explicit"): "`cache_control: {type: ephemeral}` breakpoint after the stable "
    "prefix",
    ("extended", "automatic"): "`prompt_cache_retention: 24h`",
    ("default", "automatic"): "no setting: keep the stable prefix first and byte-identical so "
    "automatic caching hits (the logs read less from cache than the replay)",
    ("off", "explicit"): "no `cache_control` breakpoint (writes cost more than the reads)",
}


def _caching(con: duckdb.DuckDBPyConnection, lever: Any) -> Changes:
    result: CachingResult = lever
    changes: Changes = {}
    for f in result.details.by_feature:
        feature = None if f.feature == "(none)" else f.feature
        templates = sorted(
            (t for t in result.details.by_template if t.label.split(": ", 1)[0] == f.feature),
            key=lambda t: (-(t.saving or 0), t.template),
        )
        settings = [
            f"{CACHE_SETTINGS.get((t.option or '', t.mode or ''), t.option)} on {t.model_key}"
            for t in templates
            if t.option
        ]
        rule = next((t.recommendation.id for t in templates if t.recommendation), None)
        changes[feature] = Change(
            text="; ".join(dict.fromkeys(settings)) or f"cache option {f.option}",
            rule=rule,
            effort="config",
            reason=result.risk.quality.removeprefix("none: "),  # the level column says low
        )
    return changes


def _batching(con: duckdb.DuckDBPyConnection, lever: Any) -> Changes:
    result: BatchingResult = lever
    return {
        f.feature: Change(
            text=f"submit {f.feature} through the {' / '.join(f.apis)} (results within 24 h)",
            rule=f.rules[0] if f.rules else None,
            effort="code",
            reason="nobody waited on these requests (offline or service job, not streamed); "
            + result.risk.turnaround,
        )
        for f in result.details.features
        if f.level == "strict"
    }


_CHANGES: Mapping[str, Callable[[duckdb.DuckDBPyConnection, Any], Changes]] = {
    "tiering": _tiering,
    "trimming": _trimming,
    "output_caps": _output_caps,
    "caching": _caching,
    "batching": _batching,
}


def build_unit_economics(con: duckdb.DuckDBPyConnection) -> list[A.UnitCostRow]:
    """Per feature: baseline (`costs`) against the combined counterfactual (`sim_final`), over
    priced requests; the features' savings sum to the combined saving. Costliest first."""
    rows = con.execute(
        """SELECT r.feature, count(*),
                  sum(c.baseline_cost), sum(f.final_cost),
                  coalesce(sum(c.baseline_cost), 0) - coalesce(sum(f.final_cost), 0),
                  count(*) FILTER (WHERE c.baseline_cost IS NOT NULL),
                  count(*) FILTER (WHERE f.final_cost IS NOT NULL),
                  count(*) FILTER (WHERE c.baseline_cost IS NULL OR f.final_cost IS NULL)
           FROM requests r JOIN costs c USING (request_id) JOIN sim_final f USING (request_id)
           GROUP BY ALL ORDER BY 3 DESC NULLS LAST, 1 NULLS LAST"""
    ).fetchall()
    return [
        A.UnitCostRow(
            feature=feature,
            requests=n,
            cost_before=before,
            cost_after=after,
            saving=Decimal(saving),
            per_request_before=(before / priced_before).quantize(PLACES) if priced_before else None,
            per_request_after=(after / priced_after).quantize(PLACES) if priced_after else None,
            unpriced_requests=unpriced,
        )
        for feature, n, before, after, saving, priced_before, priced_after, unpriced in rows
    ]
