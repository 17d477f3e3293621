"""Generate a large, seeded log in advisor's recommended format (docs/logging-format.md).

    python benchmarks/generate_log.py                      # 1,000,000 requests -> benchmarks/out/
    python benchmarks/generate_log.py --requests 200000 --gzip

Shape: ten features, each with a long shared system prompt built once (one of them, support-chat,
starts with a date line that changes every day); multi-turn sessions whose history grows turn by
turn; OpenAI, Anthropic and Gemini (OpenAI-compatible) bodies over twenty models, one of them
unpriced; diurnal timestamps over 30 days; usage absent on ~3% of rows (failed calls and responses
logged without usage, so the tokenizer path runs); a few malformed lines of several kinds.

Speed: all text is drawn from pools built once and stored already JSON-escaped with its token
count, so each line is a single string concatenation (no json.dumps per request). A sidecar
`<log>.meta.json` records what was generated.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gzip
import heapq
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import textpool as tp  # a sibling module: benchmarks/ is not a package

OUT_DIR = Path(__file__).resolve().parent / "out"
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
DAYS = 30
MAX_TURNS = 6
TURN_GAP_S = 90.0  # mean pause between a reply and the user's next message
CACHE_TTL_S = 300
USAGE_MISSING = 0.025  # ok responses logged without usage (counted by the tokenizer)
ERROR_RATE = 0.005  # failed calls: no response, no usage
MALFORMED_RATE = 5e-5
NO_ID_RATE = 0.05  # rows without a top-level id: advisor falls back to response.id


@dataclass(frozen=True)
class Model:
    name: str
    provider: str  # envelope `provider`
    style: str  # body shape: "openai" or "anthropic"
    served_as: str  # response.model (dated snapshot, as providers return it)
    price_in: float  # USD per 1M tokens, only for the gateway-style `cost` field
    price_out: float
    reasoning: bool = False


MODELS = {m.name: m for m in (
    Model("gpt-4o", "openai", "openai", "gpt-4o-2024-08-06", 2.5, 10),
    Model("gpt-4o-mini", "openai", "openai", "gpt-4o-mini-2024-07-18", 0.15, 0.6),
    Model("gpt-4.1", "openai", "openai", "gpt-4.1-2025-04-14", 2, 8),
    Model("gpt-4.1-mini", "openai", "openai", "gpt-4.1-mini-2025-04-14", 0.4, 1.6),
    Model("gpt-4.1-nano", "openai", "openai", "gpt-4.1-nano-2025-04-14", 0.1, 0.4),
    Model("gpt-5", "openai", "openai", "gpt-5-2025-08-07", 1.25, 10, reasoning=True),
    Model("gpt-5-mini", "openai", "openai", "gpt-5-mini-2025-08-07", 0.25, 2, reasoning=True),
    Model("gpt-5-nano", "openai", "openai", "gpt-5-nano-2025-08-07", 0.05, 0.4, reasoning=True),
    Model("o3", "openai", "openai", "o3-2025-04-16", 2, 8, reasoning=True),
    Model("o4-mini", "openai", "openai", "o4-mini-2025-04-16", 1.1, 4.4, reasoning=True),
    Model("gpt-3.5-turbo", "openai", "openai", "gpt-3.5-turbo-0125", 0.5, 1.5),
    Model("gpt-4-turbo", "openai", "openai", "gpt-4-turbo-2024-04-09", 10, 30),
    Model("claude-opus-4-1", "anthropic", "anthropic", "claude-opus-4-1-20250805", 15, 75),
    Model("claude-sonnet-4-5", "anthropic", "anthropic", "claude-sonnet-4-5-20250929", 3, 15),
    Model("claude-sonnet-4-20250514", "anthropic", "anthropic", "claude-sonnet-4-20250514", 3, 15),
    Model("claude-haiku-4-5", "anthropic", "anthropic", "claude-haiku-4-5-20251001", 1, 5),
    Model("claude-3-5-haiku-20241022", "anthropic", "anthropic", "claude-3-5-haiku-20241022",
          0.8, 4),
    Model("gemini-2.5-flash", "google", "openai", "gemini-2.5-flash", 0.3, 2.5),
    Model("gemini-2.5-pro", "google", "openai", "gemini-2.5-pro", 1.25, 10, reasoning=True),
    # Self-hosted fine-tune behind an OpenAI-compatible gateway: deliberately unpriced.
    Model("acme-llama-3.1-70b-ft", "vllm", "openai", "acme-llama-3.1-70b-ft", 0.6, 0.6),
)}  # fmt: skip


@dataclass(frozen=True)
class Feature:
    name: str
    weight: float
    models: tuple[tuple[str, float], ...]
    system_tokens: int  # target length of the shared system prompt
    kind: str  # which user-text pool (textpool.USER key, or "code" / "report")
    continue_p: float  # chance a request continues an open session instead of starting one
    user_parts: tuple[int, int]  # pool items per user message
    reply_parts: tuple[int, int]  # pool items per assistant reply
    max_tokens: int
    stream: bool = False
    temperature: float = 0.2
    tags: tuple[str, ...] = ("interactive",)
    response_format: str | None = None
    tools: bool = False
    anthropic_cache: bool = False  # system prompt sent with cache_control
    date_line: bool = False
    gateway_cost: bool = True


# fmt: off
FEATURES = (
    Feature("support-chat", 0.22, (("gpt-4o", 0.55), ("gpt-4o-mini", 0.25),
            ("claude-sonnet-4-5", 0.2)), 1000, "chat", 0.45, (1, 3), (2, 5), 512, stream=True,
            anthropic_cache=True, date_line=True),
    Feature("ticket-triage", 0.18, (("gpt-4o-mini", 0.5), ("gpt-4.1-nano", 0.3),
            ("gpt-3.5-turbo", 0.2)), 1000, "ticket", 0.0, (2, 6), (1, 1), 64,
            temperature=0.0, tags=("backoffice",), response_format="json_object"),
    Feature("invoice-extract", 0.10, (("gpt-4.1", 0.5), ("gpt-4.1-mini", 0.3),
            ("gemini-2.5-flash", 0.2)), 1200, "invoice", 0.0, (6, 16), (1, 1), 1024,
            temperature=0.0, tags=("backoffice", "nightly"), response_format="json_schema",
            gateway_cost=False),
    Feature("email-draft", 0.08, (("claude-sonnet-4-5", 0.5), ("claude-haiku-4-5", 0.3),
            ("gpt-4o", 0.2)), 1000, "email", 0.3, (1, 4), (1, 3), 800, stream=True,
            temperature=0.7, anthropic_cache=True),
    Feature("code-review", 0.04, (("claude-opus-4-1", 0.3), ("claude-sonnet-4-20250514", 0.4),
            ("o3", 0.3)), 2000, "code", 0.2, (2, 5), (3, 8), 4096, tags=("ci",),
            anthropic_cache=True),
    Feature("sql-assistant", 0.05, (("gpt-4.1", 0.4), ("gpt-5-mini", 0.4),
            ("acme-llama-3.1-70b-ft", 0.2)), 1600, "sql", 0.4, (1, 2), (1, 3), 1500, stream=True),
    Feature("report-summary", 0.08, (("claude-3-5-haiku-20241022", 0.4), ("gemini-2.5-flash", 0.2),
            ("gpt-5-nano", 0.2), ("gpt-4o-mini", 0.2)), 1000, "report", 0.0, (2, 8), (2, 6),
            1200, tags=("nightly",), gateway_cost=False),
    Feature("translate", 0.11, (("gpt-4o-mini", 0.5), ("gpt-4.1-mini", 0.3),
            ("gpt-4-turbo", 0.2)), 1000, "translate", 0.0, (1, 2), (1, 2), 400,
            temperature=0.0),
    Feature("search-rerank", 0.09, (("gpt-5-nano", 0.5), ("gpt-4.1-nano", 0.5)), 1000, "search",
            0.0, (1, 1), (1, 1), 32, temperature=0.0),
    Feature("agent-planner", 0.05, (("gpt-5", 0.4), ("o4-mini", 0.3), ("gemini-2.5-pro", 0.15),
            ("claude-sonnet-4-5", 0.15)), 1800, "agent", 0.4, (1, 2), (1, 3), 2048, tools=True),
)
# fmt: on

_TOOL_SPECS = [
    (f"{verb}_{noun}", f"{verb.capitalize()} one {noun} by id.",
     {"type": "object", "required": [f"{noun}_id"],
      "properties": {f"{noun}_id": {"type": "string"}}})
    for verb in ("lookup", "update", "cancel") for noun in ("order", "invoice", "ticket")
]  # fmt: skip
TOOLS = {
    "openai": json.dumps(
        [{"type": "function", "function": {"name": n, "description": d, "parameters": p}}
         for n, d, p in _TOOL_SPECS], separators=(",", ":")),
    "anthropic": json.dumps(
        [{"name": n, "description": d, "input_schema": p} for n, d, p in _TOOL_SPECS],
        separators=(",", ":")),
}  # fmt: skip


def esc(text: str) -> str:
    """`text` as the inside of a JSON string literal."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


@dataclass
class Pool:
    """Texts stored JSON-escaped, with their token counts."""

    items: list[str]
    tokens: list[int]

    def draw(self, r: random.Random, k: int, sep: str) -> tuple[str, int]:
        idx = [r.randrange(len(self.items)) for _ in range(k)]
        return sep.join([self.items[i] for i in idx]), sum(self.tokens[i] for i in idx)


def count_tokens(texts: list[str]) -> list[int]:
    """o200k_base counts when the encoding is on disk (advisor's loader), else length / 4."""
    try:
        from advisor.tokens import count_texts

        counts = count_texts(texts)
    except ImportError:
        counts = None
    return counts if counts is not None else [max(1, len(t) // 4) for t in texts]


def make_pool(texts: list[str]) -> Pool:
    return Pool([esc(t) for t in texts], count_tokens(texts))


@dataclass
class Session:
    sid: str
    user: int
    model: Model
    history: list[str]  # JSON message objects, in the model's body style
    history_tokens: int
    seq: int  # tie-breaker in the schedule heap
    turns_left: int
    state: FeatureState


@dataclass
class FeatureState:
    feature: Feature
    models: list[Model]
    model_cum: list[float]
    user_pool: Pool
    # system prompt per variant (one, or one per day): (escaped text, tokens)
    systems: list[tuple[str, int]]
    tags_json: str
    last_seen: dict[tuple[str, int], float] = field(default_factory=dict)  # prompt cache warmth


@dataclass
class Stats:
    lines: int = 0
    requests: int = 0
    malformed: int = 0
    errors: int = 0
    usage_missing: int = 0
    multi_turn: int = 0
    user_text_bytes: int = 0  # escaped, new user text only (heavy and agent profiles)
    by_provider: dict[str, int] = field(default_factory=dict)


@dataclass
class LogMeta(Stats):
    """What a generated log holds (written next to it as `<log>.meta.json`)."""

    path: str = ""
    seed: int = 0
    profile: str = "default"
    features: int = 0
    models: int = 0
    system_prompts: int = 0  # distinct system prompt texts
    system_tokens_range: list[int] = field(default_factory=list)
    bytes: int = 0
    pool_seconds: float = 0.0
    seconds: float = 0.0


@dataclass
class Call:
    """One request as decided, before it is written out (`Generator.render`)."""

    t: float  # seconds since START
    sess: Session
    system: str  # escaped
    messages: list[str]  # JSON message objects after the system prompt
    prompt_tokens: int
    reply: str  # escaped; may be empty when the answer is a tool call
    completion: int  # output tokens, reasoning included
    reasoning: int
    cached: int
    cache_write: int
    # (tool name, its input as a JSON object), drawn only when the call succeeds
    tool: Callable[[], tuple[str, str]] | None = None


def cache_split(
    model: Model, feat: Feature, warm: bool, system_tokens: int, prefix_tokens: int
) -> tuple[int, int]:
    """(cache reads, cache writes) as each provider logs them: Anthropic caches the marked
    system prompt (written when cold); OpenAI caches a warm prefix of 1,024+ tokens in
    128-token steps."""
    if model.style == "anthropic":
        if not feat.anthropic_cache:
            return 0, 0
        return (system_tokens, 0) if warm else (0, system_tokens)
    if warm and system_tokens >= 1024:
        return prefix_tokens // 128 * 128, 0
    return 0, 0


def tool_use_block(rid: str, name: str, args: str) -> str:
    """An Anthropic `tool_use` content block."""
    return f'{{"type":"tool_use","id":"toolu_{rid}","name":"{name}","input":{args}}}'


def tool_calls_message(rid: str, name: str, args: str) -> str:
    """An OpenAI assistant message calling one tool (arguments as a JSON string)."""
    return (
        '{"role":"assistant","content":null,"tool_calls":[{"id":"call_'
        f'{rid[:12]}","type":"function","function":{{"name":"{name}",'
        f'"arguments":"{esc(args)}"}}}}]}}'
    )


def _cum(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return [c / total for c in out]


def user_pools(r: random.Random) -> dict[str, Pool]:
    """User-text pools by kind: filled sentences, diff hunks, report paragraphs."""
    pools: dict[str, Pool] = {
        kind: make_pool(tp.sentences(r, templates, 3000)) for kind, templates in tp.USER.items()
    }
    pools["code"] = make_pool([tp.fill(r, r.choice(tp.CODE)) for _ in range(2000)])
    weights = tp.zipf_weights()
    pools["report"] = make_pool([tp.paragraph(r, weights) for _ in range(3000)])
    return pools


def feature_state(feat: Feature, pool: Pool, systems: list[str]) -> FeatureState:
    """A feature's state with its system prompt variants (plain text) counted and escaped."""
    counts = count_tokens(systems)
    models = [MODELS[name] for name, _ in feat.models]
    return FeatureState(
        feat, models, _cum([w for _, w in feat.models]), pool,
        [(esc(t), n) for t, n in zip(systems, counts, strict=True)], json.dumps(list(feat.tags)),
    )  # fmt: skip


def build_states(r: random.Random) -> tuple[list[FeatureState], Pool, list[float]]:
    """Every pool, system prompt and weight table, built once."""
    pools = user_pools(r)
    replies = make_pool(tp.sentences(r, tp.ASSISTANT, 6000))
    states = []
    for feat in FEATURES:
        title = feat.name.replace("-", " ")
        base = tp.system_prompt(r, title, int(feat.system_tokens * 4.6))
        if feat.date_line:
            texts = [
                (START + dt.timedelta(days=d)).strftime("Today's date is %A, %d %B %Y.\n") + base
                for d in range(DAYS + 1)
            ]
        else:
            texts = [base]
        states.append(feature_state(feat, pools[feat.kind], texts))
    return states, replies, _cum([f.weight for f in FEATURES])


def hour_cdf() -> list[float]:
    """Cumulative request share per hour over the period: diurnal, quieter at weekends."""
    weights = []
    for h in range(DAYS * 24):
        hour, weekday = h % 24, (START + dt.timedelta(hours=h)).weekday()
        w = 0.25 + (1.0 if 8 <= hour <= 18 else 0.35 if 6 <= hour <= 22 else 0.0)
        weights.append(w * (0.45 if weekday >= 5 else 1.0))
    return _cum(weights)


def _timestamp(seconds: float) -> str:
    stamp = START + dt.timedelta(seconds=seconds)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _malformed(r: random.Random, good: str, kind: int) -> str:
    """One broken line of several kinds (invalid JSON, wrong types, missing fields)."""
    if kind == 1:
        return '["not", "an", "object"]'
    if kind == 2:
        bad = good.replace('"timestamp":"', '"timestamp":"yesterday ', 1)
    elif kind == 3:
        bad = good.replace('"prompt_tokens":', '"prompt_tokens":-', 1).replace(
            '"input_tokens":', '"input_tokens":-', 1
        )
    elif kind == 4:
        bad = good.replace('"model":"', '"model_name":"', 1)
    elif kind == 5:
        return ""  # an empty line
    else:
        bad = good
    if bad == good:  # nothing to break that way (e.g. no usage): a truncated write instead
        return good[: r.randint(20, max(21, len(good) // 2))]
    return bad


class Generator:
    """The default profile: ten features, short sessions (see the module docstring)."""

    profile = "default"

    def __init__(self, seed: int, requests: int) -> None:
        self.r = random.Random(seed)
        self.n = requests
        self.states, self.replies, self.feature_cum = self.build_states()
        self.hours = hour_cdf()
        users = 5000
        self.user_cum = _cum([1.0 / (i + 1) ** 0.8 for i in range(users)])
        self.stats = Stats()
        self.next_session = 1
        self.due: list[tuple[float, int, Session]] = []  # (time of next turn, seq, session)

    def build_states(self) -> tuple[list[FeatureState], Pool, list[float]]:
        return build_states(self.r)

    def time_of(self, i: int) -> float:
        u = (i + self.r.random()) / self.n
        h = min(bisect.bisect_left(self.hours, u), len(self.hours) - 1)
        lo = self.hours[h - 1] if h else 0.0
        frac = (u - lo) / (self.hours[h] - lo) if self.hours[h] > lo else 0.0
        return (h + min(max(frac, 0.0), 1.0)) * 3600.0

    def new_session(self, st: FeatureState) -> Session:
        """A new conversation; its follow-up turns are scheduled minutes apart."""
        r = self.r
        model = st.models[bisect.bisect_left(st.model_cum, r.random())]
        user = bisect.bisect_left(self.user_cum, r.random())
        turns = 1
        while turns < MAX_TURNS and r.random() < st.feature.continue_p:
            turns += 1
        sess = Session(f"s_{self.next_session}", user, model, [], 0, self.next_session, turns, st)
        self.next_session += 1
        return sess

    def pick(self, t: float) -> tuple[Session, bool]:
        """The session this request belongs to: a due follow-up turn, else a new conversation."""
        if self.due and self.due[0][0] <= t:
            _, _, sess = heapq.heappop(self.due)
            return sess, True
        st = self.states[bisect.bisect_left(self.feature_cum, self.r.random())]
        return self.new_session(st), False

    def user_text(self, st: FeatureState, i: int) -> tuple[str, int]:
        """One user message (escaped) and its tokens."""
        r, feat = self.r, st.feature
        user_text, user_tokens = st.user_pool.draw(
            r, r.randint(*feat.user_parts), "\\n\\n" if feat.kind in ("report", "code") else " "
        )
        if feat.kind == "report":
            user_text = "Summarise this report for the leadership update:\\n\\n" + user_text
            user_tokens += 10
        elif feat.kind == "code":
            user_text = "Review this diff:\\n```diff\\n" + user_text + "```"
            user_tokens += 8
        return user_text, user_tokens

    def variant(self, st: FeatureState, sess: Session, day: int) -> int:
        """Which of the feature's system prompts this request sends."""
        return day if st.feature.date_line else 0

    def line(self, i: int) -> str:
        r = self.r
        t = self.time_of(i)
        sess, continued = self.pick(t)
        st = sess.state
        feat = st.feature
        model = sess.model
        anthropic = model.style == "anthropic"
        variant = self.variant(st, sess, int(t // 86400))
        system, system_tokens = st.systems[variant]

        user_text, user_tokens = self.user_text(st, i)
        if anthropic and r.random() < 0.3:
            content = f'[{{"type":"text","text":"{user_text}"}}]'
        else:
            content = f'"{user_text}"'
        user_msg = f'{{"role":"user","content":{content}}}'
        messages = [*sess.history, user_msg]
        prompt_tokens = system_tokens + sess.history_tokens + user_tokens + 3 * len(messages) + 6

        reply, out_tokens = self.replies.draw(r, r.randint(*feat.reply_parts), " ")
        tool_call = feat.tools and r.random() < 0.35
        reasoning = r.randint(64, 2400) if model.reasoning else 0

        # Provider-side prompt caching: warm if this prefix was seen within the TTL.
        key = (model.name, variant)
        warm = t - st.last_seen.get(key, -1e9) <= CACHE_TTL_S
        st.last_seen[key] = t
        prefix = system_tokens + (sess.history_tokens if continued else 0)
        cached, cache_write = cache_split(model, feat, warm, system_tokens, prefix)

        # Session bookkeeping: the reply becomes history for the next turn.
        if continued:
            self.stats.multi_turn += 1
        sess.history.append(user_msg)
        sess.history.append(f'{{"role":"assistant","content":"{reply}"}}')
        sess.history_tokens += user_tokens + out_tokens + 6
        sess.turns_left -= 1
        if sess.turns_left > 0:  # the user reads the reply, then writes again
            heapq.heappush(self.due, (t + r.expovariate(1 / TURN_GAP_S), sess.seq, sess))

        call = Call(t, sess, system, messages, prompt_tokens, reply, out_tokens + reasoning,
                    reasoning, cached, cache_write)  # fmt: skip
        if tool_call:
            call.tool = lambda: ("lookup_order", f'{{"order_id":"{tp.fill(r, "{order}")}"}}')
        return self.render(call)[0]

    def render(self, call: Call) -> tuple[str, str]:
        """The JSON line of one call, and the id its response (and tool call) carry."""
        r = self.r
        sess = call.sess
        st = sess.state
        feat = st.feature
        model = sess.model
        anthropic = model.style == "anthropic"
        system, prompt_tokens, completion = call.system, call.prompt_tokens, call.completion
        cached, cache_write, reply = call.cached, call.cache_write, call.reply
        rid = f"{r.getrandbits(64):016x}"
        status = r.random()
        error = status < ERROR_RATE
        no_usage = not error and status < ERROR_RATE + USAGE_MISSING
        parts = []
        if r.random() >= NO_ID_RATE:
            parts.append(f'{{"id":"req_{rid}"')
        else:
            parts.append("{")
        latency = int(180 + completion * r.uniform(8, 25) + prompt_tokens * 0.05)
        sep = "," if len(parts[0]) > 1 else ""
        parts.append(
            f'{sep}"timestamp":"{_timestamp(call.t)}","latency_ms":{latency},'
            f'"ttft_ms":{int(latency * r.uniform(0.1, 0.3)) if feat.stream else "null"},'
            f'"provider":"{model.provider}","user":"u_{sess.user}",'
            f'"account":"acct_{sess.user % 40}",'
            f'"feature":"{feat.name}","session_id":"{sess.sid}",'
            f'"tags":{st.tags_json},"service_tier":"default","request":{{'
            f'"model":"{model.name}",'
        )
        if anthropic:
            if feat.anthropic_cache:
                parts.append(
                    f'"system":[{{"type":"text","text":"{system}",'
                    f'"cache_control":{{"type":"ephemeral"}}}}],'
                )
            else:
                parts.append(f'"system":"{system}",')
            parts.append(f'"messages":[{",".join(call.messages)}]')
        else:
            parts.append(
                f'"messages":[{{"role":"system","content":"{system}"}},{",".join(call.messages)}]'
            )
        stream = "true" if feat.stream else "false"
        parts.append(
            f',"max_tokens":{feat.max_tokens},"stream":{stream},"temperature":{feat.temperature}'
        )
        if feat.tools:
            parts.append(f',"tools":{TOOLS[model.style]}')
        if feat.response_format and not anthropic:
            parts.append(f',"response_format":{{"type":"{feat.response_format}"}}')
        parts.append("},")

        if error:
            self.stats.errors += 1
            kind = r.choice(["rate_limit_error", "overloaded_error", "timeout", "invalid_request"])
            parts.append(
                f'"response":null,"error":{{"type":"{kind}","message":"upstream {kind}"}}}}'
            )
            return "".join(parts), rid
        tool = call.tool() if call.tool else None
        if anthropic:
            inp = prompt_tokens - cached - cache_write
            usage = (
                f'"usage":{{"input_tokens":{inp},"cache_creation_input_tokens":{cache_write},'
                f'"cache_read_input_tokens":{cached},"output_tokens":{completion}}}'
            )
            blocks = f'{{"type":"text","text":"{reply}"}}' if reply else ""
            if tool:
                blocks += "," if blocks else ""
                blocks += tool_use_block(rid, *tool)
            parts.append(
                f'"response":{{"id":"msg_{rid}","type":"message","role":"assistant",'
                f'"model":"{model.served_as}","content":[{blocks}],'
                f'"stop_reason":"{"tool_use" if tool else "end_turn"}"'
            )
        else:
            usage = (
                f'"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion},'
                f'"total_tokens":{prompt_tokens + completion},'
                f'"prompt_tokens_details":{{"cached_tokens":{cached}}},'
                f'"completion_tokens_details":{{"reasoning_tokens":{call.reasoning}}}}}'
            )
            if tool:
                message = tool_calls_message(rid, *tool)
                finish = "tool_calls"
            else:
                message = f'{{"role":"assistant","content":"{reply}"}}'
                finish = "stop"
            parts.append(
                f'"response":{{"id":"chatcmpl-{rid}","object":"chat.completion",'
                f'"model":"{model.served_as}","choices":[{{"index":0,"message":{message},'
                f'"finish_reason":"{finish}"}}]'
            )
        if no_usage:
            self.stats.usage_missing += 1
            parts.append("},")
        else:
            parts.append(f",{usage}}},")
        parts.append('"error":null')
        if feat.gateway_cost:
            cost = (prompt_tokens * model.price_in + completion * model.price_out) / 1e6
            parts.append(f',"cost":{cost:.8f}')
        if r.random() < 0.02:
            parts.append(f',"feedback":{r.choice((1, 1, 1, -1))}')
        parts.append("}")
        self.stats.by_provider[model.provider] = self.stats.by_provider.get(model.provider, 0) + 1
        return "".join(parts), rid

    def write(self, fh: TextIO, batch: int = 5000) -> None:
        r = self.r
        forced = {self.n // 3: 0, self.n // 2: 1, (2 * self.n) // 3: 2}  # malformed even when small
        buf: list[str] = []
        for i in range(self.n):
            text = self.line(i)
            kind = forced.get(i) if i else None
            if kind is None and r.random() < MALFORMED_RATE:
                kind = r.randrange(6)
            if kind is not None:
                text = _malformed(r, text, kind)
                self.stats.malformed += 1
            else:
                self.stats.requests += 1
            buf.append(text)
            if len(buf) >= batch:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
        self.stats.lines = self.n


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", newline="\n", compresslevel=1)
    return open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 22)


PROFILES = ("default", "heavy", "agent")


def generator_class(profile: str) -> type[Generator]:
    if profile == "default":
        return Generator
    import profiles  # a sibling module that builds on this one, hence imported late

    return profiles.GENERATORS[profile]


def generate(path: Path, requests: int, seed: int = 7, profile: str = "default") -> LogMeta:
    """Write the log and its `<log>.meta.json`; return the meta."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gen = generator_class(profile)(seed, requests)
    pools_s = time.perf_counter() - started
    with _open_text(path) as fh:
        gen.write(fh)
    systems = [n for st in gen.states for _, n in st.systems]
    meta = LogMeta(
        path=str(path),
        seed=seed,
        profile=profile,
        bytes=path.stat().st_size,
        pool_seconds=round(pools_s, 2),
        seconds=round(time.perf_counter() - started, 2),
        features=len(gen.states),
        models=len({m.name for st in gen.states for m in st.models}),
        system_prompts=len(systems),
        system_tokens_range=[min(systems), max(systems)],
        **asdict(gen.stats),
    )
    meta_path(path).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    return meta


def meta_path(log: Path) -> Path:
    return log.with_name(log.name + ".meta.json")


def default_path(requests: int, gz: bool = False, profile: str = "default") -> Path:
    return OUT_DIR / f"log-{profile}-{requests}.jsonl{'.gz' if gz else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="lines to write")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz (slower)")
    parser.add_argument("--profile", choices=PROFILES, default="default", help="traffic shape")
    parser.add_argument(
        "-o", "--output", type=Path, help="default: benchmarks/out/log-PROFILE-N.jsonl"
    )
    args = parser.parse_args(argv)
    path = args.output or default_path(args.requests, args.gzip, args.profile)
    meta = generate(path, args.requests, args.seed, args.profile)
    print(
        f"{path}: {meta.lines:,} lines, {meta.bytes / 1e9:.2f} GB "
        f"({meta.bytes / max(1, meta.lines):,.0f} B/line), {meta.seconds} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
