"""levers[id=output_caps] in analysis.json: the typed details, risk and result of the lever.

details: per cap group (feature, or feature and template) its cap and what the cap would cut;
per reasoning group (feature on one model) its reasoning against visible output and the budget;
the runaway outputs (redacted excerpts); the saving at a lower and a higher percentile (the
range). risk: the requests the caps would have cut and the reasoning the budgets would have
cut, always beside the saving.
"""

from __future__ import annotations

from typing import Literal

from advisor.levers.base import LeverResultBase
from advisor.money import Model, Money, Share, Tokens


class CapRow(Model):
    """One feature (or one template of a feature) and its max_tokens cap."""

    feature: str
    template: str | None  # system-prompt hash, where the feature is split by template
    template_excerpt: str | None  # redacted start of that system prompt
    requests: int
    visible_tokens: Tokens  # output minus reasoning
    median_tokens: float
    percentile: float
    cap: Tokens | None  # on visible output tokens; None: fewer requests than the policy's minimum
    parameter: str  # the request parameter(s) to set, per provider
    setting: Tokens | None  # the value to set: cap + the most reasoning the group logged
    applied: bool  # a recommendation rule chose this cap (the replay applies only these)
    rule: str | None
    tokens_saved: Tokens
    saving: Money
    truncated_requests: int  # would have been cut by the cap
    truncated_share: Share
    already_at_cap: int  # ended at their logged cap (finish_reason = length)
    uncapped_requests: int  # sent without max_tokens
    uncapped: bool  # no request of the group was sent with max_tokens
    runaway_requests: int
    note: str | None  # why no cap is applied


class ReasoningRow(Model):
    """One feature on one reasoning model: hidden reasoning against visible output."""

    feature: str
    model: str
    provider: str | None
    requests: int
    output_tokens: Tokens
    reasoning_tokens: Tokens
    visible_output_tokens: Tokens
    reasoning_share: Share  # of output tokens
    easy_medium_share: Share | None  # None: no difficulty classification to read
    hard_requests: int | None
    percentile: float
    budget_tokens: Tokens | None  # reasoning tokens per request; None: too few requests
    setting: str | None  # the config line: `reasoning_effort: low`, `thinking.budget_tokens: N`
    applied: bool
    rule: str | None
    reasoning_saved: Tokens
    saving: Money
    above_budget: int  # requests that reasoned more than the budget
    above_budget_share: Share
    note: str | None


class RunawayRow(Model):
    request_id: str
    feature: str
    model: str | None
    visible_tokens: Tokens
    median_tokens: float  # of its feature (or template)
    repeated_share: Share | None  # repeated word n-grams; None: text not logged or not scanned
    repetition: bool  # the runaway rule holds on its repetition alone (a loop)
    beyond_norm: bool  # the rule holds on its length against the median alone
    capped: bool  # sent with max_tokens
    excerpt: str  # redacted


class RangeEnd(Model):
    """The lever's figures with caps and budgets at other percentiles (same groups)."""

    cap_percentile: float
    budget_percentile: float
    tokens_saved: Tokens  # visible and reasoning
    saving: Money
    truncated_requests: int


class OutputCapsDetails(Model):
    cap_percentile: float
    headroom: float
    min_requests: int
    budget_percentile: float
    requests_read: int  # successful billed requests with a feature
    unattributed_requests: int  # without a feature: no cap group
    visible_tokens_saved: Tokens
    reasoning_tokens_saved: Tokens
    unpriced_requests_cut: int  # cut, but on a model without a price: their saving is unknown
    range_low: RangeEnd  # higher percentiles: less saved, fewer cuts
    range_high: RangeEnd  # lower percentiles: more saved, more cuts
    features: list[CapRow]  # by feature, template
    uncapped_features: list[str]
    reasoning: list[ReasoningRow]  # by feature, model
    reasoning_note: str | None  # why no budget could be priced, when none could
    runaways: list[RunawayRow]  # the longest first
    runaway_requests: int


class OutputCapsRisk(Model):
    truncated_requests: int  # answers the caps would have cut short
    truncated_share: Share  # of requests read
    truncated_features: list[str]
    already_at_cap: int  # cut short today (finish_reason = length)
    reasoning_cut_requests: int  # would have reasoned less than they did
    hard_requests_budgeted: int  # classified hard, in a feature that gets a budget
    note: str


class OutputCapsResult(LeverResultBase):
    id: Literal["output_caps"]
    details: OutputCapsDetails
    risk: OutputCapsRisk
