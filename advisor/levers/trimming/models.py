"""levers[id=trimming] in analysis.json: the typed details, risk and result of the trimming lever.

details: totals (tokens trimmed by kind, requests affected, how tokens were counted), one row
per feature and template (tokens, saving, kinds), the lossy candidates (listed, never counted),
the tool-definition opportunities (flagged, not counted), and redacted before/after examples.
"""

from __future__ import annotations

from typing import Literal

from advisor.levers.base import LeverResultBase
from advisor.money import MaybeMoney, Model, Share, Tokens

TokenSource = Literal["exact", "approximate", "estimated"]


class KindTokens(Model):
    """Tokens trimmed by each lossless kind."""

    whitespace: Tokens = 0
    pretty_json: Tokens = 0
    markdown_rules: Tokens = 0
    duplicates: Tokens = 0  # repeated paragraphs inside one text
    duplicate_messages: Tokens = 0  # a whole message repeated in the same request


class TokenSources(Model):
    """Affected requests by how their trimmed tokens were counted."""

    exact: int = 0  # the model's own tiktoken encoding
    approximate: int = 0  # o200k_base standing in for another provider's tokenizer
    estimated: int = 0  # no encoding file: from UTF-8 length


class Totals(Model):
    requests: int
    affected_requests: int
    input_tokens: Tokens  # of all requests with a token count
    trimmed_tokens: Tokens
    trimmed_share: Share  # trimmed / input tokens
    by_kind: KindTokens
    token_source: TokenSource  # the least exact count among the affected requests
    requests_by_source: TokenSources
    candidate_texts: int  # distinct texts the SQL pre-filter passed to the transforms
    trimmed_texts: int  # of which a transform shortened


class Row(Model):
    """One feature and template (system prompt): what trimming removes from its prompts."""

    feature: str | None
    template_id: str | None  # the system prompt's text hash
    requests: int
    affected_requests: int
    input_tokens: Tokens
    trimmed_tokens: Tokens
    trimmed_share: Share
    saving: MaybeMoney  # None: no priced request in the row
    by_kind: KindTokens
    kinds: list[str]  # the kinds with trimmed tokens, most first


class LossyCandidate(Model):
    """Tokens that could go with a change that may alter answers: listed, never counted."""

    kind: Literal["few_shot", "history", "context"]
    feature: str | None
    requests: int
    tokens: Tokens
    tokens_counted: Literal["logged", "estimated"]  # estimated: from text length
    why: str


class ToolOpportunity(Model):
    """A feature that sends tool definitions with every call and never called a tool."""

    feature: str | None
    requests: int
    tokens_per_request: Tokens
    tokens: Tokens
    token_source: TokenSource


class Example(Model):
    """A redacted before/after excerpt of one kind of trim in one feature (whitespace shown:
    a line break as ⏎, a space run as ·)."""

    feature: str | None
    kind: str
    before: str
    after: str


class TrimmingDetails(Model):
    policy: str  # the rules file's id
    totals: Totals
    rows: list[Row]  # by trimmed tokens, at most the policy's max_rows
    other: Row | None  # the rows beyond max_rows, summed
    lossy: list[LossyCandidate]
    unused_tools: list[ToolOpportunity]
    examples: list[Example]
    assumptions: list[str]


class TrimmingRisk(Model):
    quality: Literal["none"]  # only lossless edits are counted
    why: str
    estimated_requests: int  # affected requests whose trimmed tokens are estimated
    approximate_requests: int  # counted with a stand-in tokenizer
    not_counted: list[str]  # what the lever lists without counting


class TrimmingResult(LeverResultBase):
    id: Literal["trimming"]
    details: TrimmingDetails
    risk: TrimmingRisk
