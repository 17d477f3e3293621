"""levers[id=trimming]: the lever as `simulate` runs it (advisor.levers.base.Lever)."""

from __future__ import annotations

from typing import ClassVar

from advisor.levers import tables as T
from advisor.levers.base import Findings, LeverContext, Replayed, State
from advisor.levers.trimming import details, replay
from advisor.levers.trimming.models import TrimmingDetails, TrimmingRisk
from advisor.levers.trimming.policy import TrimmingPolicy, load_policy


class TrimmingLever:
    """Input tokens that are pure waste, removed where removal is lossless (module docstrings of
    advisor.levers.trimming.transforms and .replay say what and how)."""

    id: ClassVar[str] = "trimming"
    title: ClassVar[str] = "Prompt trimming"

    def __init__(self) -> None:
        self.policy: TrimmingPolicy | None = None
        self.trimmer: replay.Trimmer | None = None

    def prepare(self, ctx: LeverContext) -> None:
        self.policy = load_policy(ctx.rules_dir)
        encodings = {key: model.encoding for key, model in ctx.prices.models.items()}
        self.trimmer = replay.Trimmer(self.policy, encodings)

    def replay(self, ctx: LeverContext, state: State, out: str) -> Replayed:
        assert self.trimmer is not None, "prepare() first"
        affected = self.trimmer.replay(ctx.con, state.table, state.messages, state.texts, out)
        return Replayed(State(out, T.TRIM_MESSAGES, T.TRIM_TEXTS), affected)

    def describe(
        self, ctx: LeverContext, base: State, alone: Replayed
    ) -> Findings[TrimmingDetails, TrimmingRisk]:
        assert self.policy is not None and self.trimmer is not None, "prepare() first"
        found, risk, recommendations = details.describe(
            ctx.con, self.policy, self.trimmer, base, alone.state
        )
        return Findings(found, risk, recommendations, per_request=T.TRIM_DECISIONS)
