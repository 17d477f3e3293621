"""Generate the seeded demo traffic in sample_logs/: two weeks of production-like LLM request logs.

Writes `traffic.jsonl.gz` (JSON lines in the envelope of docs/logging-format.md: OpenAI, Azure,
Google, self-hosted and Anthropic bodies) and `ground_truth.json` (what was planted, so tests
and demos can check the analyzer finds it). The traffic holds thirteen features with their own
system prompts, daily/hourly seasonality, cache behaviour emulated per provider, errors and
retries, missing usage, gateway costs (one model priced stale), a runaway user, variable-prefix
prompts that break caching, unpriced and aliased model names, ~12 malformed lines, and the plants
of the trimming, output-cap and batching levers (duplicated paragraphs and pretty-printed JSON,
uncapped runaway outputs, reasoning-heavy easy extraction, nightly service-account bursts) and a
prompt regression for the anomalies (a deploy that grows one feature's system prompt).

    TIKTOKEN_CACHE_DIR=/path/to/cache python sample_logs/generate.py [--seed N] [--requests N]

Deterministic: the same seed and arguments give byte-identical files (gzip mtime 0, seeded RNGs,
no clock, ordered containers only). Needs tiktoken with the o200k_base encoding available offline.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from random import Random
from typing import Any

sys.dont_write_bytecode = True  # keep __pycache__ out of sample_logs/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # textgen.py sits next to this script
import textgen as tg  # noqa: E402  (needs the path set up above)

HERE = Path(__file__).resolve().parent
START = datetime(2026, 10, 18, tzinfo=UTC)  # 14 days ending 2026-10-31T23:59:59Z
DAYS = 14
# Relative traffic per UTC hour: European/US working hours dominate, nights are quiet.
HOUR_SHAPE = [2, 1, 1, 1, 1, 2, 4, 8, 14, 19, 20, 19, 16, 18, 20, 19, 17, 13, 10, 8, 6, 5, 3, 2]
RUNAWAY_USER = "u_runaway_0042"
RUNAWAY_START = datetime(2026, 10, 27, 13, 20, tzinfo=UTC)
# The prompt regression (issue 12's tokens-jump plant): from this deploy on, invoice-extract's
# system prompt carries the vendor master data, VENDORS lines of it.
REGRESSION_FEATURE = "invoice-extract"
REGRESSION_AT = datetime(2026, 10, 28, tzinfo=UTC)
VENDORS = 48


@dataclass(frozen=True)
class Feature:
    share: float  # fraction of --requests
    difficulty: str
    system_tokens: int  # target size of the stable system prompt
    params: dict[str, Any]  # request parameters every call of the feature sends
    tags: tuple[str, ...]
    variable_prefix: str | None = None  # "date" | "user_name": variable text before the stable part
    batch_like: bool = False
    streaming: bool = False
    # Features added after the first release draw from their own random streams, so adding one
    # leaves every other feature's requests byte-identical (and the figures tests pin unchanged).
    own_rng: bool = False


CHAT = ("interactive", "chat")
FEATURES: dict[str, Feature] = {
    "support-chat": Feature(
        0.2,
        "medium",
        2300,
        {"max_tokens": 1024, "temperature": 0.3, "stream": True},
        CHAT,
        streaming=True,
    ),
    "ticket-triage": Feature(
        0.115,
        "easy",
        1800,
        {"max_tokens": 8, "temperature": 0},
        ("pipeline", "helpdesk"),
        variable_prefix="date",
    ),
    "invoice-extract": Feature(
        0.085,
        "easy",
        1500,
        {"max_tokens": 800, "temperature": 0, "response_format": {"type": "json_object"}},
        ("upload",),
    ),
    "email-polish": Feature(
        0.065,
        "easy",
        1400,
        {"max_tokens": 1024, "temperature": 0.7},
        ("interactive",),
        variable_prefix="user_name",
    ),
    "code-review": Feature(0.038, "hard", 2700, {}, ("developer",)),
    "math-solver": Feature(0.042, "hard", 1300, {}, ("tutor",)),
    "nightly-digest": Feature(
        0.21, "medium", 1300, {"temperature": 0.2}, ("nightly", "offline"), batch_like=True
    ),
    "doc-qa": Feature(
        0.085, "medium", 700, {"temperature": 0.1, "stream": True}, CHAT, streaming=True
    ),
    "sentiment": Feature(0.063, "easy", 1200, {}, ("analytics",)),
    "labs-experiment": Feature(
        0.017, "easy", 300, {"max_tokens": 512, "temperature": 0.8}, ("labs",)
    ),
    # The plants of issue 11's levers: prompt bloat (trimming), uncapped runaway outputs (output
    # caps) and a reasoning model on easy extraction work (reasoning budgets).
    "returns-agent": Feature(
        0.05, "medium", 450, {"max_tokens": 200, "temperature": 0}, ("support-tools",), own_rng=True
    ),
    "product-copy": Feature(
        0.04, "medium", 550, {"temperature": 0.9}, ("marketing",), own_rng=True
    ),
    "address-extract": Feature(
        0.04,
        "easy",
        350,
        {"response_format": {"type": "json_object"}},
        ("checkout",),
        own_rng=True,
    ),
}
RUNAWAY_SHARE = 0.05
SERVICE_USER = "svc-nightly-digest"  # the scheduled job's service account
RUNAWAY_OUTPUT_SHARE = 0.025  # product-copy answers that never stop
SONNET = "claude-sonnet-4-5-20250929"
# route -> (provider, model as requested, model as served, price key; None = unpriced)
ROUTES: dict[str, tuple[str, str, str, str | None]] = {
    "gpt-4o": ("openai", "gpt-4o", "gpt-4o-2024-08-06", "gpt-4o"),
    "gpt-4o-pinned": ("openai", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o"),
    "azure-gpt-4o": ("azure", "prod-gpt4o-eu", "gpt-4o-2024-08-06", "gpt-4o"),
    "gpt-4o-mini": ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    "gpt-4.1": ("openai", "gpt-4.1", "gpt-4.1-2025-04-14", "gpt-4.1"),
    "proxy-4.1-mini": ("openai", "openai/gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    "gpt-5-mini": ("openai", "gpt-5-mini", "gpt-5-mini-2025-08-07", "gpt-5-mini"),
    "gpt-5": ("openai", "gpt-5", "gpt-5-2025-08-07", "gpt-5"),
    "o3": ("openai", "o3", "o3-2025-04-16", "o3"),
    "o4-mini": ("openai", "o4-mini", "o4-mini-2025-04-16", "o4-mini"),
    "sonnet": ("anthropic", "claude-sonnet-4-5", SONNET, "claude-sonnet-4-5"),
    "sonnet-pinned": ("anthropic", SONNET, SONNET, "claude-sonnet-4-5"),
    "opus": ("anthropic", "claude-opus-4-1", "claude-opus-4-1-20250805", "claude-opus-4-1"),
    "gemini": ("google", "gemini-2.5-flash", "gemini-2.5-flash", "gemini-2.5-flash"),
    "labs": ("self-hosted", "acme-llama-3.1-70b-ft", "acme-llama-3.1-70b-ft", None),
}
# USD per 1M tokens: input, cached input, cache write (5 min, 1 h), output. The gateway's `cost`
# uses these except for gpt-4.1, which it still prices at a stale rate (a reconciliation gap).
PRICES: dict[str, tuple[float, float, float, float, float]] = {
    "gpt-4o": (2.50, 1.25, 0, 0, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0, 0, 0.60),
    "gpt-4.1": (2.00, 0.50, 0, 0, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 0, 0, 1.60),
    "gpt-5": (1.25, 0.125, 0, 0, 10.00),
    "gpt-5-mini": (0.25, 0.025, 0, 0, 2.00),
    "o3": (2.00, 0.50, 0, 0, 8.00),
    "o4-mini": (1.10, 0.275, 0, 0, 4.40),
    "claude-sonnet-4-5": (3.00, 0.30, 3.75, 6.00, 15.00),
    "claude-opus-4-1": (15.00, 1.50, 18.75, 30.00, 75.00),
    "gemini-2.5-flash": (0.30, 0.075, 0, 0, 2.50),
}
STALE_GATEWAY_PRICES = {"gpt-4.1": (2.50, 0.625, 0, 0, 10.00)}
# Decode speed in ms per output token for the latency model (default 11, unpriced 18).
MS_PER_TOKEN = {
    "gpt-4o-mini": 7,
    "gpt-4.1-mini": 7,
    "o4-mini": 6,
    "gemini-2.5-flash": 4,
    "claude-opus-4-1": 28,
    "claude-sonnet-4-5": 14,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
    for name, desc in [
        ("lookup_order", "Fetch an order's status, items and tracking."),
        ("create_refund", "Refund an order in full or in part."),
    ]
]


@cache
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception as exc:  # the generator is a dev tool: fail loudly, not with made-up counts
        sys.exit(
            f"generate.py: cannot load tiktoken's o200k_base encoding ({exc}).\n"
            "Install tiktoken and point TIKTOKEN_CACHE_DIR at a directory holding the encoding."
        )


@cache
def tok(text: str) -> int:
    return len(_encoding().encode_ordinary(text))


@dataclass
class User:
    id: str
    name: str
    email: str
    account: str


@dataclass
class Call:
    """One planned LLM call, before usage, cost and rendering."""

    ts: float
    feature: str
    provider: str
    model: str  # as the client asked for it (request.model)
    served: str  # response.model
    price_key: str | None  # the price entry the model is; None = unpriced
    system: list[str]  # system blocks; OpenAI-style bodies join them
    messages: list[tuple[str, str]]
    output: str
    user: str | None
    account: str
    params: dict[str, Any]
    tags: list[str]
    difficulty: str
    stream: bool
    session: str | None = None
    reasoning: int = 0
    tier: str = "default"
    usage_logged: bool = True
    retry: bool = False  # a client retry of a failed call, identical request
    cache_ttl: int = 0  # Anthropic cache_control on the last system block: 300 or 3600 seconds
    error: dict[str, Any] | None = None
    trimmed: tuple[str, ...] = ()  # planted bloat: (system, *message texts) losslessly trimmed
    runaway: str = ""  # planted runaway output: "repetition" | "long"
    # filled in by the usage pass
    prompt_tokens: int = 0
    cached: int = 0
    cache_write: int = 0
    completion: int = 0
    finish: str = "stop"


class Sink:
    """Collects one feature's calls, filling in what every call of the feature shares."""

    def __init__(self, feature: str, n: int, stable: str) -> None:
        self.feature, self.spec, self.n, self.stable = feature, FEATURES[feature], n, stable
        self.calls: list[Call] = []

    @property
    def full(self) -> bool:
        return len(self.calls) >= self.n

    def add(
        self,
        t: float,
        route: str,
        who: User | str | None,
        messages: str | list[tuple[str, str]],
        output: str,
        **kw: Any,
    ) -> None:
        user, account = (who.id, who.account) if isinstance(who, User) else (who, "acme-corp")
        msgs = [("user", messages)] if isinstance(messages, str) else list(messages)
        params = self.spec.params | kw.pop("params", {})
        if self.spec.streaming and kw.get("usage_logged", True):
            params["stream_options"] = {"include_usage": True}
        head = (t, self.feature, *ROUTES[route], kw.pop("system", [self.stable]), msgs, output)
        tags = kw.pop("tags", list(self.spec.tags))
        tail = (params, tags, kw.pop("difficulty", self.spec.difficulty))
        self.calls.append(Call(*head, user, account, *tail, self.spec.streaming, **kw))


class Planner:
    """Per-feature builders of Calls; every random draw comes from a seeded, named stream."""

    def __init__(self, seed: int, requests: int) -> None:
        self.seed, self.total = seed, requests
        self.r = Random(f"{seed}:plan")
        weekend = {h for h in range(DAYS * 24) if (START + timedelta(hours=h)).weekday() >= 5}
        weights = [HOUR_SHAPE[h % 24] * (0.35 if h in weekend else 1) for h in range(DAYS * 24)]
        self.hour_cum = [sum(weights[: i + 1]) for i in range(len(weights))]
        self.users = self._users()
        # Long-tailed activity: a few heavy users, many occasional ones.
        self.user_weights = [1 / (i + 1) ** 0.8 for i in range(len(self.users))]
        self.stable = {f: self._system(f, spec.system_tokens) for f, spec in FEATURES.items()}
        # The trimming plant: the returns template pastes its policy block a second time.
        self.stable["returns-agent"] += "\n" + tg.RETURNS_POLICY + "\n"
        # The regression's block draws from a stream of its own: every other text is unchanged.
        block = tg.vendor_directory(Random(f"{seed}:regression"), VENDORS)
        self.regressed = self.stable[REGRESSION_FEATURE] + "\n" + block + "\n"

    def _users(self) -> list[User]:
        r, users = Random(f"{self.seed}:users"), []
        names: list[str] = []
        while len(names) < 50:
            name = tg.person(r)
            names += [] if name in names else [name]
        for i, (uid, name) in enumerate(zip(r.sample(range(1000, 10000), 50), names, strict=True)):
            # Every 7th user (heavy ones included) belongs to the EU tenant served through Azure.
            account = "globex-eu" if i % 7 == 1 else r.choice(["acme-corp", "acme-corp", "globex"])
            domain = "globex.eu" if account == "globex-eu" else account + ".com"
            email = f"{name.lower().replace(' ', '.')}@{domain}"
            users.append(User(f"u_{uid}", name, email, account))
        return users

    def _system(self, feature: str, target: int) -> str:
        """The stable instruction block: a hand-written head padded with few-shot examples."""
        r = Random(f"{self.seed}:system:{feature}")
        text, i = tg.SYSTEM_HEADS[feature] + "\n## Examples\n", 1
        while tok(text) < target:
            text += f"\n### Example {i}\n{tg.example(r, feature)}\n"
            i += 1
        return text

    def rng(self, feature: str) -> Random:
        return Random(f"{self.seed}:plan:{feature}") if FEATURES[feature].own_rng else self.r

    def when(self, r: Random | None = None) -> float:
        r = r or self.r
        hour = r.choices(range(len(self.hour_cum)), cum_weights=self.hour_cum)[0]
        return START.timestamp() + (hour + r.random()) * 3600

    def user(self, r: Random | None = None) -> User:
        return (r or self.r).choices(self.users, self.user_weights)[0]

    def sid(self) -> str:
        return f"s_{self.r.getrandbits(48):012x}"

    def plan(self) -> list[Call]:
        calls: list[Call] = []
        for feature, spec in FEATURES.items():
            sink = Sink(feature, round(spec.share * self.total), self.stable[feature])
            getattr(self, "build_" + feature.replace("-", "_"))(sink)
            calls += sink.calls[: sink.n]
        return self.add_errors(calls)

    # --- features ---------------------------------------------------------------------------
    def build_support_chat(self, sink: Sink) -> None:
        r, tools = self.r, {"tools": TOOLS}
        self.build_runaway(sink, round(RUNAWAY_SHARE * self.total))
        sink.n += len(sink.calls)
        while not sink.full:
            topic = r.choices(list(tg.SUPPORT), [3, 2, 2, 2, 2])[0]
            u, t, sid, turns = self.user(), self.when(), self.sid(), r.randint(1, 4)
            convo = tg.support_turns(r, topic, turns)
            usage = r.random() > 0.15  # older clients stream without include_usage
            route = "azure-gpt-4o" if u.account == "globex-eu" else "gpt-4o"  # EU data residency
            level = "easy" if topic == "faq" else "medium"
            for k in range(turns):
                reply = convo[2 * k + 1][1] if k < turns - 1 else tg.support_reply(r, topic, {})
                kw = {"session": sid, "params": tools, "usage_logged": usage, "difficulty": level}
                sink.add(t, route, u, convo[: 2 * k + 1], reply, **kw)
                t += 20 + r.random() * 160  # the customer reads and types

    def build_runaway(self, sink: Sink, n: int) -> None:
        """A client stuck in a loop: re-sends the growing conversation every ~12 s for 2 hours."""
        r, t, who = self.r, RUNAWAY_START.timestamp(), User(RUNAWAY_USER, "", "", "acme-corp")
        ask = "Export my complete order history (account AC-88123) as one table. All orders!"
        while len(sink.calls) < n:
            msgs, sid = [("user", ask)], self.sid()
            for _ in range(r.randint(3, 6)):  # until the client gives up and starts over
                out = tg.order_history_table(r, r.randint(20, 34))
                sink.add(t, "gpt-4o", who, msgs, out, session=sid, params={"tools": TOOLS})
                msgs = [*msgs, ("assistant", out), ("user", r.choice(tg.RUNAWAY_NUDGES))]
                t += 8 + r.random() * 8
        del sink.calls[n:]

    def build_ticket_triage(self, sink: Sink) -> None:
        while not sink.full:
            t, (text, label), x = self.when(), tg.ticket(self.r), self.r.random()
            # The planted cache breaker: a per-minute date line *before* the stable instructions.
            stamp = datetime.fromtimestamp(t, UTC).strftime("Today is %A, %Y-%m-%d %H:%M UTC.")
            route = "sonnet" if x < 0.35 else "gpt-4o-pinned" if x < 0.55 else "gpt-4o"
            sink.add(t, route, None, text, label, system=[stamp, sink.stable])

    def build_invoice_extract(self, sink: Sink) -> None:
        r = self.r
        # The first stack is a one-off re-processing backfill sent through the Batch API.
        t, backfill = START.timestamp() + 4.96 * 86400, {"tags": ["backfill"], "tier": "batch"}
        while not sink.full:
            u, extra = self.user(), backfill if not sink.calls else {}
            for _ in range(20 if extra else r.randint(1, 20)):  # a stack of uploaded invoices
                text, out = tg.invoice(r)
                route = "proxy-4.1-mini" if r.random() < 0.12 else "gpt-4.1"  # an A/B test
                msg = f"Extract the fields from this invoice:\n\n{text}"
                system = [self.regressed if t >= REGRESSION_AT.timestamp() else sink.stable]
                sink.add(t, route, u, msg, out, system=system, **extra)
                t += 2 + r.random() * 6
            t = self.when()

    def build_email_polish(self, sink: Sink) -> None:
        r, new_client = self.r, datetime(2026, 10, 25, tzinfo=UTC).timestamp()
        while not sink.full:
            u, t = self.user(), self.when()
            draft, polished = tg.email(r, u.name)
            # The planted cache breaker: the sender's identity *before* the stable style guide.
            system = [f"You are writing on behalf of {u.name} ({u.email}).", sink.stable]
            # From 25 Oct a new add-in pins the snapshot and marks the style guide cacheable.
            new = t >= new_client
            ttl = (3600 if r.random() < 0.15 else 300) if new else 0
            route = "sonnet-pinned" if new else "sonnet"
            sink.add(t, route, u, draft, polished, system=system, cache_ttl=ttl)

    def build_code_review(self, sink: Sink) -> None:
        r = self.r
        opus = {"params": {"max_tokens": 8192, "temperature": 0.2}}
        gpt5 = {"params": {"max_completion_tokens": 16000, "reasoning_effort": "high"}}
        while not sink.full:
            u, t, sid = self.user(), self.when(), self.sid()
            for _ in range(r.randint(1, 3)):  # re-reviews after each push to the PR
                d = tg.diff(r, r.randint(1, 5))
                msg, review = f"Review this pull request.\n\n```diff\n{d}\n```", tg.review(r, d)
                level = "hard" if d.count("\n") > 40 else "medium"  # small diffs are easier
                if r.random() < 0.55:
                    sink.add(t, "opus", u, msg, review, session=sid, difficulty=level, **opus)
                else:
                    reasoning = r.randint(1500, 9000)
                    kw = {"session": sid, "difficulty": level, "reasoning": reasoning, **gpt5}
                    sink.add(t, "gpt-5", u, msg, review, **kw)
                t += 600 + r.random() * 3000

    def build_math_solver(self, sink: Sink) -> None:
        r = self.r
        while not sink.full:
            u, t, (q, a) = self.user(), self.when(), tg.math_problem(r)
            o3, flex = r.random() < 0.4, r.random() < 0.06  # flex: a cost experiment
            params = {"reasoning_effort": r.choice(["medium", "high"])}
            params |= {"service_tier": "flex"} if flex else {}
            reasoning = r.randint(800, 12000) if o3 else r.randint(500, 6000)
            kw = {"params": params, "reasoning": reasoning, "tier": "flex" if flex else "default"}
            sink.add(t, "o3" if o3 else "o4-mini", u, f"Problem: {q}", a, **kw)

    def build_nightly_digest(self, sink: Sink) -> None:
        r = self.r
        for day in range(DAYS):
            night = START + timedelta(days=day, hours=2)
            # A scheduled job: every document between 02:00 and 02:30, one after another.
            size = round(sink.n / DAYS * (0.8 + 0.4 * r.random()))
            for off in sorted(r.uniform(0, 1790) for _ in range(size)):
                doc = tg.document(r, r.randint(12, 40))
                msg = f"Summarise this document for the digest:\n\n{doc}"
                t, sid = night.timestamp() + off, f"nightly-{night:%Y-%m-%d}"
                sink.add(t, "gpt-4o", SERVICE_USER, msg, tg.summary(r, doc), session=sid)
        sink.n = len(sink.calls)

    def build_doc_qa(self, sink: Sink) -> None:
        r = self.r
        while not sink.full:
            u, t, sid, usage = self.user(), self.when(), self.sid(), r.random() > 0.25
            route = "gemini" if r.random() < 0.3 else "gpt-4o-mini"
            for _ in range(r.randint(1, 3)):
                prompt, answer = tg.doc_qa(r)
                sink.add(t, route, u, prompt, answer, session=sid, usage_logged=usage)
                t += 30 + r.random() * 240

    def build_sentiment(self, sink: Sink) -> None:
        r = self.r
        while not sink.full:
            u, t = r.choice(self.users[2:5]), self.when()
            for _ in range(r.randint(10, 60)):  # an analyst runs a notebook over a review export
                text, label = tg.sentiment(r)
                sink.add(t, "gpt-5", u, text, label, reasoning=r.randint(64, 448))
                t += 1.5 + r.random() * 4

    def build_labs_experiment(self, sink: Sink) -> None:
        r = self.r
        while not sink.full:
            u, t = r.choice(self.users[5:7]), self.when()
            for _ in range(r.randint(10, 40)):  # an eval run against the fine-tuned model
                sink.add(t, "labs", u, *tg.labs(r))
                t += 2 + r.random() * 5

    def build_returns_agent(self, sink: Sink) -> None:
        r, dup = self.rng(sink.feature), "\n" + tg.RETURNS_POLICY + "\n"
        clean = sink.stable.removesuffix(dup)
        while not sink.full:
            u, t = self.user(r), self.when(r)
            pretty, minified, decision = tg.return_request(r)
            sink.add(t, "gpt-4.1", u, pretty, decision, trimmed=(clean, minified))

    def build_product_copy(self, sink: Sink) -> None:
        r = self.rng(sink.feature)
        while not sink.full:
            u, t = r.choice(self.users[7:12]), self.when(r)
            for _ in range(r.randint(1, 8)):  # a merchandiser works through a few products
                prompt, out = tg.product_copy(r)
                kind = ""
                if r.random() < RUNAWAY_OUTPUT_SHARE:  # no max_tokens, so nothing stops it
                    out, loops = tg.runaway_copy(r, out, r.randint(3000, 9000), tok)
                    kind = "repetition" if loops else "long"
                sink.add(t, "gpt-4o-mini", u, prompt, out, runaway=kind)
                t += 20 + r.random() * 100

    def build_address_extract(self, sink: Sink) -> None:
        r = self.rng(sink.feature)
        while not sink.full:
            u, t = self.user(r), self.when(r)
            text, out = tg.address_form(r)
            # gpt-5-mini at its default reasoning effort thinks far longer than the task needs.
            sink.add(t, "gpt-5-mini", u, text, out, reasoning=r.randint(350, 2400))

    def add_errors(self, calls: list[Call]) -> list[Call]:
        """~3% of calls fail; most failures are retried with the identical request a bit later."""
        r, out = Random(f"{self.seed}:errors"), []
        for c in calls:
            out.append(c)
            if r.random() >= 0.03:
                continue
            status, kind, msg = r.choice(tg.ERRORS_BY_PROVIDER[c.provider])
            c.error = {"status": status, "type": kind, "message": msg}
            if r.random() < 0.7:
                delay = 1 + r.random() * 20
                out.append(replace(c, ts=c.ts + delay, error=None, retry=True, tags=list(c.tags)))
        return out


# --- usage, caching, latency, cost ------------------------------------------------------------
class UsagePass:
    """Token counts from the texts, and cache hits emulated in time order per provider's rules."""

    def __init__(self, seed: int) -> None:
        self.r = Random(f"{seed}:cache")
        self.own = {f: Random(f"{seed}:cache:{f}") for f, s in FEATURES.items() if s.own_rng}
        self.openai_seen: dict[tuple[str, tuple[str, ...]], float] = {}
        self.anthropic_seen: dict[tuple[str, str], tuple[float, int]] = {}

    def apply(self, c: Call) -> None:
        system = "\n\n".join(c.system)
        tools = json.dumps(c.params["tools"]) if "tools" in c.params else ""
        # ~3 tokens of chat-format overhead per message, plus 3 to prime the reply.
        blocks = [tok(system) + 3 + (tok(tools) if tools else 0)]
        blocks += [tok(text) + 3 for _, text in c.messages]
        c.prompt_tokens = sum(blocks) + 3
        cap = c.params.get("max_tokens")
        if cap and tok(c.output) > cap:  # the model hit max_tokens: the logged text is cut there
            c.output = _encoding().decode(_encoding().encode_ordinary(c.output)[:cap])
            c.finish = "length"
        c.completion = tok(c.output) + c.reasoning
        if c.error:
            return
        if c.provider == "anthropic":
            self._anthropic(c, system, blocks[0])
        elif c.provider in ("openai", "azure"):
            self._openai(c, [tools + system, *(text for _, text in c.messages)], blocks)

    def _openai(self, c: Call, texts: list[str], blocks: list[int]) -> None:
        """Automatic caching: a prefix seen in the last ~5-10 min is cached in 128-token steps
        past the first 1024. Matching at message granularity is close enough for a sample."""
        r = self.own.get(c.feature, self.r)
        ttl = 300 + 300 * r.random()
        matched, cum = 0, 0
        for i, size in enumerate(blocks):
            cum += size
            key = (f"{c.provider}:{c.served}", tuple(texts[: i + 1]))  # caches are per model
            last = self.openai_seen.get(key)
            if matched == cum - size and last is not None and c.ts - last <= ttl:
                matched = cum
            self.openai_seen[key] = c.ts
        if matched >= 1024 and r.random() > 0.05:  # caching is best-effort: a few misses
            c.cached = 1024 + (matched - 1024) // 128 * 128

    def _anthropic(self, c: Call, system: str, prefix: int) -> None:
        """Explicit caching: only when the request marks the system prompt with cache_control;
        a write costs extra, a read within the TTL is cheap and refreshes it."""
        if not c.cache_ttl or prefix < 1024:
            return
        key = (c.served, system)
        last = self.anthropic_seen.get(key)
        if last is not None and c.ts - last[0] <= last[1]:
            c.cached, ttl = prefix, max(last[1], c.cache_ttl)
        else:
            c.cache_write, ttl = prefix, c.cache_ttl
        self.anthropic_seen[key] = (c.ts, ttl)


def timing(c: Call, r: Random) -> tuple[int, int | None]:
    """(latency_ms, ttft_ms): time to first token grows with the prompt and hidden reasoning,
    the rest with the visible output."""
    if c.error:
        status = c.error["status"]
        ms = (
            60000 + r.random() * 500
            if status is None
            else (40 + r.random() * 360 if status == 429 else 300 + r.random() * 3700)
        )
        return round(ms), None
    speed = MS_PER_TOKEN.get(c.price_key or "", 18 if c.price_key is None else 11)
    first = (300 + 0.05 * c.prompt_tokens + c.reasoning * speed * 0.5) * r.lognormvariate(0, 0.25)
    total = first + (c.completion - c.reasoning) * speed * r.lognormvariate(0, 0.15)
    if c.tier == "batch":  # the batch API returns minutes to hours later
        total += r.randint(10, 240) * 60000
    return round(total), round(first) if c.stream else None


def gateway_cost(c: Call) -> float:
    """What the customer's gateway logged as cost (USD), with its stale gpt-4.1 prices."""
    assert c.price_key is not None
    inp, cached, w5m, w1h, out = STALE_GATEWAY_PRICES.get(c.price_key) or PRICES[c.price_key]
    fresh = c.prompt_tokens - c.cached - c.cache_write
    write = w1h if c.cache_ttl == 3600 else w5m
    usd = (fresh * inp + c.cached * cached + c.cache_write * write + c.completion * out) / 1e6
    return round(usd * (0.5 if c.tier in ("batch", "flex") else 1.0), 8)


# --- rendering ----------------------------------------------------------------------------------
def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _rand_id(r: Random, n: int) -> str:
    return "".join(r.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=n))


def render(c: Call, r: Random) -> dict[str, Any]:
    """The log envelope with the provider's own request and response bodies."""
    latency, ttft = timing(c, r)
    if c.provider == "anthropic":
        request, response = _anthropic_bodies(c, r)
    else:
        request, response = _openai_bodies(c, r)
    env: dict[str, Any] = {
        "id": f"req_{r.getrandbits(80):020x}",
        "timestamp": iso(c.ts),
        "latency_ms": latency,
        "ttft_ms": ttft,
        "provider": c.provider,
        "user": c.user,
        "account": c.account,
        "feature": c.feature,
        "session_id": c.session,
        "tags": c.tags,
        "service_tier": c.tier,
        "request": request,
        "response": None if c.error else response,
        "error": c.error,
    }
    if not c.error and c.price_key and r.random() < 0.3:  # the gateway fronts ~30% of traffic
        env["cost"] = gateway_cost(c)
    if not c.error and "chat" in c.tags and r.random() < 0.1:
        env["feedback"] = 1 if r.random() < 0.8 else -1
    return env


def _openai_bodies(c: Call, r: Random) -> tuple[dict[str, Any], dict[str, Any]]:
    system = [{"role": "system", "content": "\n\n".join(c.system)}]
    messages = system + [{"role": role, "content": text} for role, text in c.messages]
    request = {"model": c.model, "messages": messages, **c.params}
    usage: dict[str, Any] = {
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion,
        "total_tokens": c.prompt_tokens + c.completion,
    }
    if c.provider in ("openai", "azure"):
        usage["prompt_tokens_details"] = {"cached_tokens": c.cached}
        usage["completion_tokens_details"] = {"reasoning_tokens": c.reasoning}
    response: dict[str, Any] = {
        "id": "chatcmpl-" + _rand_id(r, 24),
        "object": "chat.completion",
        "created": int(c.ts),
        "model": c.served,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": c.output},
                "finish_reason": c.finish,
            }
        ],
    }
    if c.usage_logged:
        response["usage"] = usage
    return request, response


def _anthropic_bodies(c: Call, r: Random) -> tuple[dict[str, Any], dict[str, Any]]:
    system: str | list[dict[str, Any]] = "\n\n".join(c.system)
    if c.cache_ttl:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in c.system]
        blocks[-1]["cache_control"] = {"type": "ephemeral"} | (
            {"ttl": "1h"} if c.cache_ttl == 3600 else {}
        )
        system = blocks
    request = {
        "model": c.model,
        "system": system,
        "messages": [{"role": role, "content": text} for role, text in c.messages],
        **c.params,
        "metadata": {"user_id": c.user},
    }
    usage: dict[str, Any] = {
        "input_tokens": c.prompt_tokens - c.cached - c.cache_write,
        "cache_creation_input_tokens": c.cache_write,
        "cache_read_input_tokens": c.cached,
        "output_tokens": c.completion,
    }
    if c.cache_ttl == 3600 or (c.cache_ttl and r.random() < 0.3):  # newer API versions say more
        one_hour = c.cache_write if c.cache_ttl == 3600 else 0
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": c.cache_write - one_hour,
            "ephemeral_1h_input_tokens": one_hour,
        }
    response: dict[str, Any] = {
        "id": "msg_01" + _rand_id(r, 22),
        "type": "message",
        "role": "assistant",
        "model": c.served,
        "content": [{"type": "text", "text": c.output}],
        "stop_reason": "max_tokens" if c.finish == "length" else "end_turn",
        "stop_sequence": None,
    }
    if c.usage_logged:
        response["usage"] = usage
    return request, response


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def plant_malformed(
    lines: list[bytes], envs: list[dict[str, Any]], r: Random
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Insert known-bad lines at random places; the last line is cut short, as by a crash."""
    donors = [e for e in envs if e["provider"] == "openai" and "usage" in (e["response"] or {})]

    def corrupt(fix: Any) -> bytes:
        env = copy.deepcopy(r.choice(donors))
        env["id"] = f"req_{r.getrandbits(80):020x}"
        fix(env)
        return dumps(env)

    def drop_models(e: dict[str, Any]) -> None:
        del e["request"]["model"], e["response"]["model"]

    whole = corrupt(lambda e: None)
    bad = [
        ("truncated JSON", whole[: len(whole) // 2]),
        (
            "invalid UTF-8 bytes",
            b"\xff\xfe\x00\x9c" + bytes(r.randrange(128, 256) for _ in range(90)),
        ),
        (
            'usage.prompt_tokens is a string ("lots")',
            corrupt(lambda e: e["response"]["usage"].update(prompt_tokens="lots")),
        ),
        ("missing timestamp", corrupt(lambda e: e.pop("timestamp"))),
        ("missing model (request.model and response.model)", corrupt(drop_models)),
        ("empty line", b""),
        ("whitespace-only line", b"  \t "),
        ("JSON array instead of object", b"[" + corrupt(lambda e: None) + b"]"),
        (
            "negative token count (usage.completion_tokens = -42)",
            corrupt(lambda e: e["response"]["usage"].update(completion_tokens=-42)),
        ),
        (
            "not JSON: a plain-text gateway log line",
            b"2026-10-25T03:12:09Z WARN gateway: upstream connection reset, retrying",
        ),
        (
            'invalid timestamp ("2026-10-32T25:61:00Z")',
            corrupt(lambda e: e.update(timestamp="2026-10-32T25:61:00Z")),
        ),
    ]
    at = dict(zip(sorted(r.sample(range(1, len(lines)), len(bad))), bad, strict=True))
    out, planted = [], []
    for i, line in enumerate(lines):
        if i in at:
            reason, data = at[i]
            out.append(data)
            planted.append({"line": len(out), "reason": reason})
        out.append(line)
    tail = corrupt(lambda e: None)
    out.append(tail[: len(tail) * 2 // 3])
    planted.append({"line": len(out), "reason": "truncated JSON (last line, no newline)"})
    return out, planted


# --- ground truth and main ----------------------------------------------------------------------
ALIAS_CASES = [
    {"model": "gpt-4o-2024-08-06", "provider": "openai", "expected_key": "gpt-4o"},
    {
        "model": "claude-sonnet-4-5-20250929",
        "provider": "anthropic",
        "expected_key": "claude-sonnet-4-5",
    },
    {"model": "openai/gpt-4.1-mini", "provider": "openai", "expected_key": "gpt-4.1-mini"},
    {
        "model": "prod-gpt4o-eu",
        "provider": "azure",
        "expected_key": "gpt-4o",
        "note": "Azure deployment name; response.model says gpt-4o-2024-08-06",
    },
]


def _percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile (no interpolation: the figure is one observed value)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)] if ordered else 0


def plants(calls: list[Call], envs: list[dict[str, Any]]) -> dict[str, Any]:
    """What issue 11's levers and issue 12's anomalies must find, measured on the generated
    requests themselves."""
    rows = list(zip(envs, calls, strict=True))

    def billed(feature: str) -> list[tuple[dict[str, Any], Call]]:
        return [(e, c) for e, c in rows if c.feature == feature and e["error"] is None]

    # Trimming: tokens(sent) - tokens(losslessly trimmed), per message, with the model's encoding.
    waste, dup, pretty = {}, 0, 0
    for e, c in rows:
        if c.trimmed:
            sent = ["\n\n".join(c.system), *(text for _, text in c.messages)]
            per = [tok(a) - tok(b) for a, b in zip(sent, c.trimmed, strict=True)]
            waste[e["id"]] = sum(per)
            if e["error"] is None:
                dup, pretty = dup + per[0], pretty + sum(per[1:])
    trim = billed("returns-agent")
    price_in = Decimal(str(PRICES["gpt-4.1"][0]))
    copy = billed("product-copy")
    normal = [c.completion for _, c in copy if not c.runaway]
    extract = billed("address-extract")
    reasoning = sum(c.reasoning for _, c in extract)
    output = sum(c.completion for _, c in extract)
    nightly = [e for e, c in rows if c.feature == "nightly-digest"]
    chat = [e for e, c in rows if c.feature == "support-chat"]
    nights = Counter(e["timestamp"][:10] for e in nightly)
    cut = REGRESSION_AT.timestamp()
    invoices = billed(REGRESSION_FEATURE)
    halves = {
        "before": [c for _, c in invoices if c.ts < cut],
        "after": [c for _, c in invoices if c.ts >= cut],
    }
    return {
        "trimming": {
            "feature": "returns-agent",
            "model": "gpt-4.1",
            "encoding": "o200k_base",
            "kinds": ["duplicate_paragraph", "pretty_json"],
            "duplicated_paragraph": tg.RETURNS_POLICY,
            "duplicated_paragraph_tokens": tok(tg.RETURNS_POLICY),
            "requests": len(waste),
            "billed_requests": len(trim),
            "cached_input_tokens": sum(c.cached for _, c in trim),
            "input_tokens": sum(c.prompt_tokens for _, c in trim),
            "waste_tokens": dup + pretty,
            "waste_tokens_duplicate_paragraph": dup,
            "waste_tokens_pretty_json": pretty,
            "waste_usd_at_input_price": str(price_in * (dup + pretty) / 1_000_000),
            "waste_tokens_by_request_id": waste,
        },
        "output_caps": {
            "feature": "product-copy",
            "model": "gpt-4o-mini",
            "max_tokens": None,
            "billed_requests": len(copy),
            "normal_output_tokens": {
                "p50": _percentile(normal, 50),
                "p95": _percentile(normal, 95),
                "max": max(normal),
            },
            "runaways": [
                {
                    "id": e["id"],
                    "output_tokens": c.completion,
                    "repetition": c.runaway == "repetition",
                }
                for e, c in copy
                if c.runaway
            ],
        },
        "reasoning": {
            "feature": "address-extract",
            "model": "gpt-5-mini",
            "difficulty": "easy",
            "reasoning_effort": None,  # not sent: the API default (medium)
            "billed_requests": len(extract),
            "reasoning_tokens": reasoning,
            "visible_output_tokens": output - reasoning,
            "reasoning_share_of_output": round(reasoning / output, 4),
        },
        "batching": {
            "eligible": {
                "feature": "nightly-digest",
                "users": sorted({str(e["user"]) for e in nightly}),
                "streaming": any(e["request"].get("stream") for e in nightly),
                "hours_utc": sorted({int(e["timestamp"][11:13]) for e in nightly}),
                "first_minute": min(e["timestamp"][11:16] for e in nightly),
                "last_minute": max(e["timestamp"][11:16] for e in nightly),
                "nights": len(nights),
                "requests_per_night": {"min": min(nights.values()), "max": max(nights.values())},
            },
            "negative_control": {
                "feature": "support-chat",
                "streaming": all(e["request"].get("stream") for e in chat),
                "users": len({e["user"] for e in chat}),
                "hours_utc": sorted({int(e["timestamp"][11:13]) for e in chat}),
            },
        },
        "prompt_regression": {
            "feature": REGRESSION_FEATURE,
            "deployed_at": iso(cut),
            "date": REGRESSION_AT.strftime("%Y-%m-%d"),
            "appended": "vendor master data",
            "system_prompt_tokens": {k: tok("\n\n".join(v[0].system)) for k, v in halves.items()},
            "billed_requests": {k: len(v) for k, v in halves.items()},
            "median_input_tokens_per_request": {
                k: round(statistics.median(c.prompt_tokens for c in v)) for k, v in halves.items()
            },
        },
    }


def ground_truth(
    seed: int,
    planner: Planner,
    calls: list[Call],
    envs: list[dict[str, Any]],
    malformed: list[dict[str, Any]],
) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name, spec in FEATURES.items():
        mine = [c for c in calls if c.feature == name]
        prefix = None
        if spec.variable_prefix:
            before = [tok("\n\n".join(c.system)) - tok(c.system[-1]) for c in mine]
            prefix = {
                "kind": spec.variable_prefix,
                "tokens_before_stable_part": round(statistics.median(before)),
            }
        features[name] = {
            "requests": len(mine),
            "difficulty": spec.difficulty,
            "models": sorted({c.model for c in mine}),
            "system_prompt_tokens": tok(planner.stable[name]),
            "variable_prefix": prefix,
            "batch_like": spec.batch_like,
            "streaming": spec.streaming,
        }
    runaway = [e for e in envs if e["user"] == RUNAWAY_USER]
    responses = [e["response"] for e in envs if e["response"] is not None]

    def tally(key: str) -> dict[str, int]:
        values = [str(e[key]) for e in envs]
        return {v: values.count(v) for v in sorted(set(values))}

    return {
        "seed": seed,
        "requests": len(envs),
        "period": {"start": iso(START.timestamp()), "end": "2026-10-31T23:59:59.999Z"},
        "malformed_lines": malformed,
        "features": features,
        "runaway_user": {
            "user": RUNAWAY_USER,
            "feature": "support-chat",
            "requests": len(runaway),
            "window_start": min(e["timestamp"] for e in runaway),
            "window_end": max(e["timestamp"] for e in runaway),
        },
        "unpriced_models": ["acme-llama-3.1-70b-ft"],
        "alias_cases": ALIAS_CASES,
        "stale_gateway_cost": {
            "model": "gpt-4.1",
            "gateway_usd_per_mtok": {"input": 2.5, "output": 10.0},
            "list_usd_per_mtok": {"input": 2.0, "output": 8.0},
        },
        "counts": {
            "errors": sum(e["error"] is not None for e in envs),
            "retries": sum(c.retry for c in calls),
            "usage_missing": sum("usage" not in r for r in responses),
            "with_cost": sum("cost" in e for e in envs),
            "with_feedback": sum("feedback" in e for e in envs),
            "service_tier": tally("service_tier"),
            "provider": tally("provider"),
        },
        "plants": plants(calls, envs),
        "difficulty_by_request_id": {
            e["id"]: c.difficulty for e, c in zip(envs, calls, strict=True)
        },
    }


def generate(seed: int, requests: int) -> tuple[bytes, dict[str, Any]]:
    """Return (the gzipped JSONL file, the ground truth) for one seed."""
    planner = Planner(seed, requests)
    calls = sorted(planner.plan(), key=lambda c: c.ts)  # stable: ties keep plan order
    usage = UsagePass(seed)
    for c in calls:
        usage.apply(c)
    r = Random(f"{seed}:render")
    own = {f: Random(f"{seed}:render:{f}") for f, spec in FEATURES.items() if spec.own_rng}
    rendered = [(render(c, own.get(c.feature, r)), c) for c in calls]
    # Loggers write a line when the call *completes*: ordering by end time leaves the (start)
    # timestamps slightly out of order, as in real logs.
    rendered.sort(key=lambda ec: ec[1].ts + ec[0]["latency_ms"] / 1000)
    envs, calls = [e for e, _ in rendered], [c for _, c in rendered]
    lines, malformed = plant_malformed([dumps(e) for e in envs], envs, r)
    raw = b"\n".join(lines)  # the cut-off last line has no newline
    truth = ground_truth(seed, planner, calls, envs, malformed)
    return gzip.compress(raw, compresslevel=9, mtime=0), truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20261001)
    ap.add_argument("--requests", type=int, default=12000, help="approximate valid lines")
    ap.add_argument("--out", type=Path, default=HERE / "traffic.jsonl.gz")
    ap.add_argument("--truth", type=Path, default=HERE / "ground_truth.json")
    args = ap.parse_args(argv)
    data, truth = generate(args.seed, args.requests)
    args.out.write_bytes(data)
    args.truth.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{f} {v['requests']}" for f, v in truth["features"].items())
    print(
        f"wrote {args.out} ({len(data) / 1e6:.1f} MB, {truth['requests']} requests, "
        f"{len(truth['malformed_lines'])} malformed lines): {counts}"
    )


if __name__ == "__main__":
    main()
