"""levers[id=caching] in analysis.json: the typed details, risk and result of the caching lever.

details: replay (requests, replayed, blocks, not replayable by reason), achieved (what the logs
report cached), achievable (the output state), simulated (the replay alone, replayed rows only),
rules (per model), tokenization, by_feature and by_template (stable prefix, reuse rate, below the
minimum, option, reads per write vs break-even, saving, recommendation), prefix_order (variable
text before a stable prefix, with the what-if saving), token_counts (how tokens were counted and
the saving's range where they are not exact) and assumptions.
"""

from __future__ import annotations

from typing import Literal

from advisor.levers.base import LeverResultBase
from advisor.money import MaybeMoney, Model, Money, Share, Tokens


class Replay(Model):
    requests: int
    replayed_requests: int
    blocks: int
    not_replayable_requests: int
    not_replayable: dict[str, int]  # reason (unpriced, no_caching, no_input, no_text) -> requests
    ttl_override_seconds: int | None


class Achieved(Model):
    cache_read_tokens: Tokens
    cache_read_share: Share


class Achievable(Model):
    cache_read_tokens: Tokens
    cache_write_tokens: Tokens
    cache_read_share: Share


class Simulated(Model):
    input_tokens: Tokens
    cache_read_tokens: Tokens
    cache_write_tokens: Tokens
    cache_read_share: Share


class OptionRow(Model):
    name: str  # default | extended | 1h | off | what-if
    ttl_seconds: float
    write_1h: bool


class RulesRow(Model):
    model_key: str
    replay_mode: str  # automatic | explicit
    block_size_tokens: int | None
    id: str
    mode: str
    min_tokens: int
    increment: int | None
    ttl_seconds: int
    refresh_on_hit: bool
    write_surcharge: bool
    max_breakpoints: int | None
    options: list[OptionRow]


class Tokenization(Model):
    encoding: str
    estimated: bool
    texts_full: int
    tokens_full: Tokens
    texts_partial: int
    tokens_partial: Tokens
    sibling_candidates: int


class GroupFigures(Model):
    """Cache figures of one group of requests (a feature, or a template on one model)."""

    requests: int
    input_tokens: Tokens
    achieved_tokens: Tokens
    achievable_tokens: Tokens
    write_tokens: Tokens
    sim_tokens: Tokens
    sim_write_tokens: Tokens
    replayed: int
    below_minimum: int
    reads: int
    cacheable: int
    stable_prefix_tokens: Tokens | None
    option: str | None  # the options kept, comma-separated
    peak_rpm: int | None
    achieved_share: Share
    achievable_share: Share
    gap_share: Share
    reuse_rate: Share
    below_minimum_share: Share
    reads_per_write: float | None
    saving: MaybeMoney  # None: no request of the group is priced
    saving_share: Share


class FeatureRow(GroupFigures):
    feature: str


class TemplateRecommendation(Model):
    id: str
    title: str
    action: str


class TemplateRow(GroupFigures):
    template: str
    model_key: str
    label: str
    mode: str | None
    break_even_reads_per_write: float | None
    recommendation: TemplateRecommendation | None = None


class PrefixOrderRow(Model):
    id: int
    role: str
    features: list[str]
    distinct_texts: int
    requests: int
    stable_head_tokens: Tokens
    variable_span_tokens: Tokens
    cacheable_tokens_lost: Tokens
    counted_with: str
    extra_cached_tokens: Tokens
    saving: Money
    pays: bool
    before: str
    after: str
    examples: list[str]


class TokenCountsRow(Model):
    model_key: str
    counts: str  # exact | approximate | estimated
    tokenizer: str
    why: str
    calibrated_on: str | None
    calibration_requests: int
    scale: float
    low_scale: float
    high_scale: float


class TokenCountsSummary(Model):
    counts: str  # the least exact of by_model
    low_saving: Money
    high_saving: Money
    low_cache_read_share: Share
    high_cache_read_share: Share
    by_model: list[TokenCountsRow]


class CachingDetails(Model):
    replay: Replay
    achieved: Achieved
    achievable: Achievable
    simulated: Simulated
    rules: list[RulesRow]
    tokenization: list[Tokenization]
    by_feature: list[FeatureRow]
    by_template: list[TemplateRow]
    prefix_order: list[PrefixOrderRow]
    token_counts: TokenCountsSummary
    assumptions: list[str]


class CachingRisk(Model):
    quality: str
    not_replayable_requests: int


class CachingResult(LeverResultBase):
    id: Literal["caching"]
    details: CachingDetails
    risk: CachingRisk
