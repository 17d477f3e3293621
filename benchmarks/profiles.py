"""The generator's heavy and agent profiles: the traffic where advisor's time and memory go.

    python benchmarks/generate_log.py --profile heavy --requests 200000
    python benchmarks/generate_log.py --profile agent --requests 200000

heavy (issue 16's held-out log, per 1M requests: ~9.4 GB): 20 features sending 30 distinct system
prompts of 500-2,900 tokens (ten features A/B-test two prompts, split by user); every user message
unique, ~215 tokens on average (~0.93 GB of user text); 5,000 users; 8 models; sessions rarer and
shorter than the default profile's.

agent: long multi-turn agent sessions of 10-40 calls, each call resending the system prompt and the
whole growing history: the task, then per step the assistant's tool call and the tool's result (in
each provider's own shape), until a final answer.

Both share the default profile's envelope, bodies, failures, missing usage and malformed lines
(`generate_log.Generator.render`), and are seeded the same way.
"""

from __future__ import annotations

import bisect
import heapq
import random
from typing import Any

import generate_log as g
import textpool as tp

HEAVY_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-5-mini",
                "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash")  # fmt: skip
SYSTEM_TOKENS = (500, 2900)  # the range of the 30 prompts' lengths
PROMPTS = 30
CHARS_PER_TOKEN = 4.45  # of textpool.system_prompt's prose under o200k_base
USER_TOKENS = (30, 370)  # target per message; pool items overshoot it by ~15 on average


def _heavy_feature(
    name: str, weight: float, kind: str, models: tuple[str, ...], continue_p: float = 0.0,
    reply_parts: tuple[int, int] = (1, 3), max_tokens: int = 800, **kw: Any,
) -> g.Feature:  # fmt: skip
    """A feature with its models in equal shares (its system prompts are sized apart)."""
    share = 1.0 / len(models)
    return g.Feature(name, weight, tuple((m, share) for m in models), 0, kind, continue_p,
                     (1, 1), reply_parts, max_tokens, **kw)  # fmt: skip


# fmt: off
HEAVY_FEATURES = (
    _heavy_feature("support-chat", 0.12, "chat", ("gpt-4o", "claude-sonnet-4-5"), 0.25,
                   stream=True, anthropic_cache=True),
    _heavy_feature("ticket-triage", 0.08, "ticket", ("gpt-4o-mini", "gpt-4.1-mini"),
                   reply_parts=(1, 1), max_tokens=64, temperature=0.0, tags=("backoffice",),
                   response_format="json_object"),
    _heavy_feature("invoice-extract", 0.06, "invoice", ("gpt-4.1", "gemini-2.5-flash"),
                   reply_parts=(1, 1), temperature=0.0, tags=("backoffice", "nightly"),
                   response_format="json_schema", gateway_cost=False),
    _heavy_feature("email-draft", 0.05, "email", ("claude-sonnet-4-5", "claude-haiku-4-5"), 0.2,
                   stream=True, temperature=0.7, anthropic_cache=True),
    _heavy_feature("code-review", 0.04, "code", ("claude-sonnet-4-5", "gpt-4.1"),
                   reply_parts=(2, 6), max_tokens=4096, tags=("ci",)),
    _heavy_feature("sql-assistant", 0.04, "sql", ("gpt-4.1", "gpt-5-mini"), 0.3, stream=True),
    _heavy_feature("report-summary", 0.05, "report", ("claude-haiku-4-5", "gemini-2.5-flash"),
                   reply_parts=(2, 5), tags=("nightly",), gateway_cost=False),
    _heavy_feature("translate", 0.07, "translate", ("gpt-4o-mini", "gpt-4.1-mini"),
                   temperature=0.0),
    _heavy_feature("search-rerank", 0.06, "search", ("gpt-4.1-mini", "gpt-4o-mini"),
                   reply_parts=(1, 1), max_tokens=32, temperature=0.0),
    _heavy_feature("agent-planner", 0.03, "agent", ("gpt-5-mini", "claude-sonnet-4-5"), 0.3,
                   tools=True, anthropic_cache=True),
    _heavy_feature("kb-answer", 0.07, "chat", ("gpt-4o-mini", "claude-haiku-4-5"), 0.2,
                   stream=True),
    _heavy_feature("product-qa", 0.05, "chat", ("gpt-4.1-mini", "gemini-2.5-flash")),
    _heavy_feature("review-moderation", 0.04, "email", ("gpt-4o-mini",), reply_parts=(1, 1),
                   max_tokens=16, temperature=0.0, tags=("backoffice",)),
    _heavy_feature("contract-review", 0.03, "invoice", ("gpt-4o", "claude-sonnet-4-5"),
                   reply_parts=(2, 5), max_tokens=2048, anthropic_cache=True),
    _heavy_feature("meeting-notes", 0.04, "report", ("gpt-4o-mini", "gemini-2.5-flash"),
                   reply_parts=(2, 4), tags=("nightly",)),
    _heavy_feature("hr-helpdesk", 0.03, "email", ("gpt-4.1-mini", "claude-haiku-4-5"), 0.2),
    _heavy_feature("claims-intake", 0.04, "ticket", ("gpt-4.1", "gpt-4o-mini"),
                   reply_parts=(1, 1), temperature=0.0, response_format="json_object"),
    _heavy_feature("release-notes", 0.02, "code", ("gpt-5-mini", "claude-sonnet-4-5"),
                   reply_parts=(2, 5), tags=("ci",)),
    _heavy_feature("lead-scoring", 0.04, "search", ("gpt-4o-mini",),
                   reply_parts=(1, 1), max_tokens=32, temperature=0.0, tags=("backoffice",)),
    _heavy_feature("data-cleanup", 0.03, "sql", ("gpt-4.1-mini", "gpt-4.1"),
                   temperature=0.0, tags=("nightly",)),
)
# fmt: on


def _states(
    r: random.Random, features: tuple[g.Feature, ...], lengths: list[list[int]]
) -> tuple[list[g.FeatureState], g.Pool, list[float]]:
    """Feature states whose system prompts have the given token lengths (one list per feature)."""
    pools = g.user_pools(r)
    replies = g.make_pool(tp.sentences(r, tp.ASSISTANT, 6000))
    states = []
    for feat, sizes in zip(features, lengths, strict=True):
        title = feat.name.replace("-", " ")
        texts = [tp.system_prompt(r, title, int(n * CHARS_PER_TOKEN)) for n in sizes]
        states.append(g.feature_state(feat, pools[feat.kind], texts))
    return states, replies, g._cum([f.weight for f in features])


class HeavyGenerator(g.Generator):
    """Many long system prompts and long, unique user messages."""

    profile = "heavy"

    def build_states(self) -> tuple[list[g.FeatureState], g.Pool, list[float]]:
        r = self.r
        lo, hi = SYSTEM_TOKENS
        sizes = [lo + round(k * (hi - lo) / (PROMPTS - 1)) for k in range(PROMPTS)]
        # Busier features have the shorter prompts (triage, search), as in real traffic; the
        # ten busiest A/B-test a second, longer rewrite.
        order = sorted(range(len(HEAVY_FEATURES)), key=lambda k: -HEAVY_FEATURES[k].weight)
        ab = len(sizes) - len(order)  # features with a second prompt
        lengths: list[list[int]] = [[] for _ in order]
        for rank, k in enumerate(order):
            lengths[k].append(sizes[rank])
        for rank, k in enumerate(order[:ab]):
            lengths[k].append(sizes[len(order) + rank])
        return _states(r, HEAVY_FEATURES, lengths)

    def variant(self, st: g.FeatureState, sess: g.Session, day: int) -> int:
        return sess.user % len(st.systems)  # A/B split by user

    def user_text(self, st: g.FeatureState, i: int) -> tuple[str, int]:
        """Pool items up to a drawn length, then the request's own reference: never repeated."""
        r, pool = self.r, st.user_pool
        target = r.randint(*USER_TOKENS)
        sep = "\\n\\n" if st.feature.kind in ("report", "code") else " "
        items, tokens = [], 0
        while tokens < target:
            k = r.randrange(len(pool.items))
            items.append(pool.items[k])
            tokens += pool.tokens[k]
        text = sep.join(items) + f" (ref {i:08d})"
        self.stats.user_text_bytes += len(text)
        return text, tokens + 6


# fmt: off
AGENT_FEATURES = (
    g.Feature("coding-agent", 0.35, (("claude-sonnet-4-5", 0.5), ("gpt-4.1", 0.3), ("gpt-5", 0.2)),
              2400, "code", 0.0, (1, 2), (1, 3), 4096, tags=("agent", "ci"), tools=True,
              anthropic_cache=True),
    g.Feature("support-agent", 0.30, (("gpt-4.1-mini", 0.5), ("gpt-4o", 0.3),
              ("claude-haiku-4-5", 0.2)), 1600, "chat", 0.0, (1, 3), (1, 3), 1024,
              tags=("agent",), tools=True, anthropic_cache=True),
    g.Feature("ops-agent", 0.20, (("o4-mini", 0.5), ("gpt-4.1", 0.5)), 1200, "agent", 0.0,
              (1, 2), (1, 3), 2048, tags=("agent",), tools=True),
    g.Feature("research-agent", 0.15, (("gpt-5", 0.5), ("claude-sonnet-4-5", 0.5)), 2800,
              "report", 0.0, (1, 2), (2, 6), 4096, tags=("agent", "nightly"), tools=True,
              anthropic_cache=True),
)
# fmt: on
AGENT_CALLS = (10, 40)
AGENT_GAP_S = 6.0  # mean pause between a call's answer and the next call (the tool runs)
TOOL_RESULT_PARTS = (1, 3)  # tool-output pool items per result
TOOL_NAMES = [name for name, _, _ in g._TOOL_SPECS]


class AgentGenerator(g.Generator):
    """Sessions of 10-40 calls; each resends the growing history of tool calls and results."""

    profile = "agent"

    def build_states(self) -> tuple[list[g.FeatureState], g.Pool, list[float]]:
        built = _states(self.r, AGENT_FEATURES, [[f.system_tokens] for f in AGENT_FEATURES])
        r = self.r
        weights = tp.zipf_weights()
        outputs = [*tp.sentences(r, tp.ASSISTANT, 2000), *tp.sentences(r, tp.USER["invoice"], 2000),
                   *(tp.paragraph(r, weights) for _ in range(2000))]  # fmt: skip
        self.tool_outputs = g.make_pool(outputs)
        self.prefix: dict[int, tuple[float, int]] = {}  # session -> (last call, its prompt)
        return built

    def new_session(self, st: g.FeatureState) -> g.Session:
        r = self.r
        model = st.models[bisect.bisect_left(st.model_cum, r.random())]
        user = bisect.bisect_left(self.user_cum, r.random())
        sess = g.Session(f"a_{self.next_session}", user, model, [], 0, self.next_session,
                         r.randint(*AGENT_CALLS), st)  # fmt: skip
        self.next_session += 1
        return sess

    def line(self, i: int) -> str:
        r = self.r
        t = self.time_of(i)
        sess, continued = self.pick(t)
        st, model = sess.state, sess.model
        anthropic = model.style == "anthropic"
        system, system_tokens = st.systems[0]
        if continued:
            self.stats.multi_turn += 1
        else:  # the task opens the history
            text, tokens = st.user_pool.draw(r, r.randint(*st.feature.user_parts), " ")
            text += f" (task {sess.sid})"
            self.stats.user_text_bytes += len(text)
            sess.history.append(f'{{"role":"user","content":"{text}"}}')
            sess.history_tokens += tokens + 8
        prompt_tokens = system_tokens + sess.history_tokens + 3 * len(sess.history) + 6
        final = sess.turns_left == 1
        reasoning = r.randint(64, 1200) if model.reasoning else 0
        if final:
            reply, out_tokens = self.replies.draw(r, r.randint(*st.feature.reply_parts), " ")
            tool = None
        else:
            reply, out_tokens = ("", 0) if r.random() < 0.6 else self.replies.draw(r, 1, " ")
            name = r.choice(TOOL_NAMES)
            tool = (name, f'{{"{name.split("_")[1]}_id":"{tp.fill(r, "{order}")}"}}')
            out_tokens += 24

        # The provider caches the previous call's prompt, a prefix of this one, while warm.
        last_t, last_prompt = self.prefix.get(sess.seq, (-1e9, 0))
        warm = t - last_t <= g.CACHE_TTL_S
        cached, cache_write = g.cache_split(model, st.feature, warm, system_tokens, last_prompt)
        self.prefix[sess.seq] = (t, prompt_tokens)

        call = g.Call(t, sess, system, list(sess.history), prompt_tokens, reply,
                      out_tokens + reasoning, reasoning, cached, cache_write)  # fmt: skip
        if tool is not None:
            call.tool = lambda: tool
        errors = self.stats.errors
        text, rid = self.render(call)
        if tool is not None and self.stats.errors == errors:  # a failed call is simply retried
            result, result_tokens = self.tool_outputs.draw(r, r.randint(*TOOL_RESULT_PARTS), "\\n")
            if anthropic:
                said = f'{{"type":"text","text":"{reply}"}},' if reply else ""
                sess.history.append(f'{{"role":"assistant","content":[{said}'
                                    f'{g.tool_use_block(rid, *tool)}]}}')  # fmt: skip
                sess.history.append(
                    f'{{"role":"user","content":[{{"type":"tool_result",'
                    f'"tool_use_id":"toolu_{rid}","content":"{result}"}}]}}'
                )
            else:
                sess.history.append(g.tool_calls_message(rid, *tool))
                sess.history.append(
                    f'{{"role":"tool","tool_call_id":"call_{rid[:12]}","content":"{result}"}}'
                )
            sess.history_tokens += out_tokens + result_tokens + 12
        sess.turns_left -= 1
        if sess.turns_left > 0:
            heapq.heappush(self.due, (t + r.expovariate(1 / AGENT_GAP_S), sess.seq, sess))
        else:
            del self.prefix[sess.seq]
        return text


GENERATORS: dict[str, type[g.Generator]] = {"heavy": HeavyGenerator, "agent": AgentGenerator}
