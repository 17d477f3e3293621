"""The output caps lever: cap each feature's visible output at a high percentile of what it
answered, and budget the hidden reasoning of easy work; report both with the requests they
would have cut (rules/output_caps.yaml sets the percentiles and which groups get them)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

import duckdb

from advisor.levers import tables as T
from advisor.levers.base import (
    Findings,
    LeverContext,
    Recommendation,
    Replayed,
    SavingRange,
    State,
)
from advisor.levers.output_caps import core
from advisor.levers.output_caps.models import (
    CapRow,
    OutputCapsDetails,
    OutputCapsRisk,
    RangeEnd,
    ReasoningRow,
    RunawayRow,
)
from advisor.levers.output_caps.policy import OutputCapsPolicy, load_policy
from advisor.redact import excerpt

LEVER_ID = "output_caps"


class OutputCapsLever:
    """A fresh instance per simulation: `prepare` decides every cap and budget on the logged
    requests; both replays apply those decisions to their state."""

    id: ClassVar[str] = LEVER_ID
    title: ClassVar[str] = "Output caps and reasoning budgets"

    def prepare(self, ctx: LeverContext) -> None:
        self.policy = _per_sample(load_policy(ctx.rules_dir), ctx.options.sample_fraction)
        self.plan = core.plan(ctx.con, self.policy)

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        affected = core.replay(ctx.con, state.table, out)
        return Replayed(State(out, state.messages, state.texts), affected)

    def describe(
        self, ctx: LeverContext, base: State, alone: Replayed
    ) -> Findings[OutputCapsDetails, OutputCapsRisk]:
        con = ctx.con
        priced = core.price(con, base.table)
        caps = _cap_rows(con, self.policy, self.plan, priced)
        reasoning = _reasoning_rows(self.policy, self.plan, priced)
        runaways = _runaway_rows(con, self.plan.runaways)
        details = _details(self.policy, self.plan, priced, caps, reasoning, runaways)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {T.OUTPUT_CAPS_DECISIONS} AS
                SELECT request_id, output_cap FROM {core.DECISIONS}
                WHERE output_cap IS NOT NULL"""
        )
        return Findings(
            details=details,
            risk=_risk(self.plan, details),
            recommendations=_recommendations(self.policy, caps, reasoning),
            per_request=T.OUTPUT_CAPS_DECISIONS,
            range=_range(details),
        )


def _p(quantile: float) -> str:
    return f"p{quantile * 100:g}"  # rules give percentiles as quantiles (0.99 -> p99)


def _range(details: OutputCapsDetails) -> SavingRange:
    low, high = details.range_low, details.range_high
    return SavingRange(
        low=low.saving,
        high=high.saving,
        assumption=(
            f"caps at {_p(high.cap_percentile)} to {_p(low.cap_percentile)} of visible output,"
            f" budgets at {_p(high.budget_percentile)} to {_p(low.budget_percentile)} of"
            f" reasoning (policy {_p(details.cap_percentile)}, {_p(details.budget_percentile)})"
        ),
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _texts(con: duckdb.DuckDBPyConnection, hashes: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({h for h in hashes if h is not None})
    if not wanted:
        return {}
    return dict(
        con.execute(
            "SELECT text_hash, left(text, 2000) FROM texts WHERE text_hash IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [wanted],
        ).fetchall()
    )


def _cap_parameter(policy: OutputCapsPolicy, providers: tuple[str, ...]) -> str:
    """`max_tokens`, or one name per provider family where the group spans several."""
    by_name: dict[str, list[str]] = {}
    for provider in providers or ("",):
        by_name.setdefault(policy.provider(provider).cap_parameter, []).append(provider)
    if len(by_name) == 1:
        return next(iter(by_name))
    return " / ".join(f"{name} ({', '.join(ps)})" for name, ps in sorted(by_name.items()))


def _cap_rows(
    con: duckdb.DuckDBPyConnection,
    policy: OutputCapsPolicy,
    plan: core.Plan,
    priced: core.Priced,
) -> list[CapRow]:
    prompts = _texts(con, (g.template for g in plan.caps))
    rows = []
    for g in plan.caps:
        note = None
        if g.cap is None:
            note = f"fewer than {policy.cap.min_requests} requests: too few to set a cap"
        elif g.rule is None and g.tokens_saved == 0:
            note = f"the cap ({g.cap}) lies above every answer: nothing to cut"
        elif g.rule is None:
            note = (
                "no rule applies: the cap would save "
                f"{_share(g.tokens_saved, g.visible_tokens):.1%} of visible tokens and cut "
                f"{_share(g.truncated, g.requests):.1%} of requests"
            )
        prompt = prompts.get(g.template or "")
        rows.append(
            CapRow(
                feature=g.feature,
                template=g.template,
                template_excerpt=excerpt(prompt, 60) if prompt else None,
                requests=g.requests,
                visible_tokens=g.visible_tokens,
                median_tokens=g.norm_tokens,
                percentile=policy.cap.percentile,
                cap=g.cap,
                parameter=_cap_parameter(policy, g.providers),
                setting=None if g.cap is None else g.cap + g.max_reasoning,
                applied=g.rule is not None,
                rule=g.rule,
                tokens_saved=g.tokens_saved,
                saving=priced.by_cap_group.get((g.feature, g.template), Decimal(0)),
                truncated_requests=g.truncated,
                truncated_share=_share(g.truncated, g.requests),
                already_at_cap=g.at_cap,
                uncapped_requests=g.uncapped,
                uncapped=g.uncapped == g.requests,
                runaway_requests=g.runaway,
                note=note,
            )
        )
    return rows


def _reasoning_setting(policy: OutputCapsPolicy, r: core.ReasoningGroup) -> str | None:
    if r.budget is None:
        return None
    p = policy.provider(r.provider)
    value = p.effort_value if p.reasoning_kind == "effort" else r.budget
    return f"{p.reasoning_parameter}: {value}"


def _reasoning_rows(
    policy: OutputCapsPolicy, plan: core.Plan, priced: core.Priced
) -> list[ReasoningRow]:
    rows = []
    for r in plan.reasoning:
        note = None
        if r.budget is None:
            note = f"fewer than {policy.reasoning.min_requests} requests: too few for a budget"
        elif not plan.classified:
            note = "no difficulty classification to read: no budget applied"
        elif r.rule is None:
            note = "no rule applies (not mostly easy work, or reasoning is a small share)"
        rows.append(
            ReasoningRow(
                feature=r.feature,
                model=r.model,
                provider=r.provider,
                requests=r.requests,
                output_tokens=r.output_tokens,
                reasoning_tokens=r.reasoning_tokens,
                visible_output_tokens=r.output_tokens - r.reasoning_tokens,
                reasoning_share=_share(r.reasoning_tokens, r.output_tokens),
                easy_medium_share=None
                if r.easy_medium is None
                else _share(r.easy_medium, r.requests),
                hard_requests=r.hard,
                percentile=policy.reasoning.percentile,
                budget_tokens=r.budget,
                setting=_reasoning_setting(policy, r),
                applied=r.rule is not None,
                rule=r.rule,
                reasoning_saved=r.reasoning_saved,
                saving=priced.by_reasoning_group.get((r.feature, r.model), Decimal(0)),
                above_budget=r.above_budget,
                above_budget_share=_share(r.above_budget, r.requests),
                note=note,
            )
        )
    return rows


def _details(
    policy: OutputCapsPolicy,
    plan: core.Plan,
    priced: core.Priced,
    caps: list[CapRow],
    reasoning: list[ReasoningRow],
    runaways: list[RunawayRow],
) -> OutputCapsDetails:
    applied = [g for g in plan.caps if g.rule is not None]
    budgeted = [r for r in plan.reasoning if r.rule is not None]
    (cap_more, cap_less), (budget_more, budget_less) = (
        policy.cap.range_percentiles,
        policy.reasoning.range_percentiles,
    )
    note = None
    if not plan.classified and plan.reasoning:
        note = (
            "no difficulty classification in the store (the tiering lever fills it): "
            "reasoning budgets are shown but not applied"
        )
    return OutputCapsDetails(
        cap_percentile=policy.cap.percentile,
        headroom=policy.cap.headroom,
        min_requests=policy.cap.min_requests,
        budget_percentile=policy.reasoning.percentile,
        requests_read=sum(g.requests for g in plan.caps),
        unattributed_requests=plan.unattributed,
        visible_tokens_saved=sum(g.tokens_saved for g in applied),
        reasoning_tokens_saved=sum(r.reasoning_saved for r in budgeted),
        unpriced_requests_cut=priced.unpriced,
        range_low=RangeEnd(
            cap_percentile=cap_less,
            budget_percentile=budget_less,
            tokens_saved=sum(g.tokens_saved_less for g in applied)
            + sum(r.reasoning_saved_less for r in budgeted),
            saving=priced.less,
            truncated_requests=sum(g.truncated_less for g in applied),
        ),
        range_high=RangeEnd(
            cap_percentile=cap_more,
            budget_percentile=budget_more,
            tokens_saved=sum(g.tokens_saved_more for g in applied)
            + sum(r.reasoning_saved_more for r in budgeted),
            saving=priced.more,
            truncated_requests=sum(g.truncated_more for g in applied),
        ),
        features=caps,
        uncapped_features=sorted({c.feature for c in caps if c.uncapped}),
        reasoning=reasoning,
        reasoning_note=note,
        runaways=runaways,
        runaway_requests=plan.runaway_count,
    )


def _runaway_rows(con: duckdb.DuckDBPyConnection, runaways: list[core.Runaway]) -> list[RunawayRow]:
    texts = _texts(con, (r.response_hash for r in runaways))
    return [
        RunawayRow(
            request_id=r.request_id,
            feature=r.feature,
            model=r.model,
            visible_tokens=r.visible_tokens,
            median_tokens=r.norm_tokens,
            repeated_share=r.repeated_share,
            repetition=r.repetition,
            beyond_norm=r.beyond_norm,
            capped=r.capped,
            excerpt=excerpt(texts.get(r.response_hash or ""), 80),
        )
        for r in runaways
    ]


def _risk(plan: core.Plan, details: OutputCapsDetails) -> OutputCapsRisk:
    applied = [g for g in plan.caps if g.rule is not None]
    budgeted = [r for r in plan.reasoning if r.rule is not None]
    truncated = sum(g.truncated for g in applied)
    return OutputCapsRisk(
        truncated_requests=truncated,
        truncated_share=_share(truncated, details.requests_read),
        truncated_features=sorted({g.feature for g in applied if g.truncated}),
        already_at_cap=sum(g.at_cap for g in plan.caps),
        reasoning_cut_requests=sum(r.above_budget for r in budgeted),
        hard_requests_budgeted=sum(r.hard or 0 for r in budgeted),
        note=(
            "A capped answer ends mid-text (finish_reason = length): check the truncated features "
            "before deploying. A lower reasoning effort or budget may lower answer quality on the "
            "requests that reasoned more than it; check them with the eval set first."
        ),
    )


def _recommendations(
    policy: OutputCapsPolicy, caps: list[CapRow], reasoning: list[ReasoningRow]
) -> list[Recommendation]:
    titles = {r.id: r.title for r in policy.recommendations}
    recs = []
    for c in caps:
        if not c.applied or c.rule is None:
            continue
        where = f"feature {c.feature}"
        if c.template is not None:
            where += f", system prompt {c.template_excerpt or c.template}"
        recs.append(
            Recommendation(
                title=f"{titles[c.rule]}: {c.feature}",
                lever=LEVER_ID,
                saving=c.saving,
                action=(
                    f"set {c.parameter}: {c.setting} on {where} (would have cut "
                    f"{c.truncated_requests:,} of {c.requests:,} requests, "
                    f"{c.truncated_share:.1%})"
                ),
            )
        )
    for r in reasoning:
        if not r.applied or r.rule is None:
            continue
        recs.append(
            Recommendation(
                title=f"{titles[r.rule]}: {r.feature} on {r.model}",
                lever=LEVER_ID,
                saving=r.saving,
                action=(
                    f"set {r.setting} on feature {r.feature} for {r.model} (priced as a "
                    f"budget of {r.budget_tokens} reasoning tokens, p{r.percentile * 100:g} of "
                    f"the feature; {r.above_budget:,} of {r.requests:,} requests reasoned more)"
                ),
            )
        )
    return recs


def _per_sample(policy: OutputCapsPolicy, fraction: float) -> OutputCapsPolicy:
    """The policy on a sample of the log: a group of n sampled requests stands for n / fraction,
    so the minimums scale down with the fraction and the sample decides as the full log would."""
    if fraction >= 1:
        return policy

    def fewer(knobs: Any) -> Any:
        return knobs.model_copy(
            update={"min_requests": max(1, math.ceil(knobs.min_requests * fraction))}
        )

    return policy.model_copy(
        update={"cap": fewer(policy.cap), "reasoning": fewer(policy.reasoning)}
    )
