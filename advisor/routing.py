"""The routing runtime: load an exported router file and decide, per request, which model serves it.

Pure Python on purpose: production imports this without scikit-learn, numpy or DuckDB.

    from advisor.routing import load_router
    router = load_router("router.yaml")             # from `advisor export router`
    decision = router.decide(request_body)           # an OpenAI or Anthropic request body
    client.chat.completions.create(**{**request_body, "model": decision.model})

It is also the single definition of the request-time features (template id, task cues, text
tokens, size bins): `advisor.difficulty.features` computes the same features in DuckDB from these
constants, and a parity test checks that both give identical decisions on the sample logs.
Text is read as ingest stores it (content strings, or the joined `text` of content parts), and all
pattern matching is ASCII-only so that Python's `re` and DuckDB's RE2 agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from advisor.conditions import Condition, evaluate, parse

ROUTER_SCHEMA_VERSION = 1
CLASSIFIER_FORMAT = "advisor-difficulty-logreg/1"
CLASSES = ("easy", "medium", "hard")
SEVERITY = {"easy": 0, "medium": 1, "hard": 2}
MICRO = 1_000_000  # confidences are compared in whole millionths, identically in SQL and here

HEAD_CHARS = 1000  # cues read the first 1000 characters of the system and the user text
TOKEN_CHARS = 500  # word tokens, the first 500: the instruction, not the pasted document
TEMPLATE_SOURCE_CHARS = 3000
TEMPLATE_CHARS = 1000
TOKEN_PATTERN = r"[A-Za-z0-9]{2,}"
MAX_TOKEN_CHARS = 24  # longer runs are ids, hashes or base64, not words
# A word the vocabulary policy lets the router use but not show travels as `tokh:` + this hash.
WORD_HASH_SALT = "advisor-word:"
WORD_HASH_CHARS = 16

# Template normalisation: what varies inside one prompt template (e-mail addresses, names and other
# capitalised words, numbers and dates, whitespace) is masked before hashing.
TEMPLATE_STEPS: tuple[tuple[str, str], ...] = (
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+", "@"),
    (r"[A-Z][A-Za-z]*", "X"),
    (r"[0-9]+", "#"),
    (r"[ \t\r\n]+", " "),
)

# Task cues, written lowercase as alternatives (made caseless below). RE2 and Python `re` in
# ASCII mode agree on this subset: no look-arounds, no back-references, ASCII classes only.
_CUE_PARTS: dict[str, tuple[str, ...]] = {
    "code": (
        r"```", r"\bdef [a-z_]+\(", r"\bdiff --git\b", r"=>", r"#include\b",
        r"\bfrom [a-z_.]+ import [a-z_]", r"\bfunction [a-z_]+\(", r"\bconst [a-z_]+ =",
        r"\bselect .+ from\b", r"\btraceback\b", r"\bstack trace\b", r"\bpull requests?\b",
        r"\bcode review", r"\brefactor", r"\bpython\b", r"\btypescript\b", r"\bjavascript\b",
        r"\bcompiler?\b", r"\bsql\b", r"\bjava\b", r"\bc\+\+", r"\bgolang\b", r"\bregex",
        r"\bwrite (a|an|the) [a-z ]*(function|program|script|class|method|query|unit tests?)\b",
        r"\bimplement (a|an|the) [a-z ]*(function|class|method|algorithm|api|endpoint)\b",
        r"\balgorithms?\b", r"\btime complexity\b", r"\bunit tests?\b",
    ),
    "math": (
        r"\bsolve\b", r"\bequations?\b", r"\bprove\b", r"\bproof\b", r"\bprobability\b",
        r"\bintegral\b", r"\bderivative\b", r"\btheorem\b", r"\bmaths?\b", r"\bmathematic",
        r"[0-9a-z] ?\^ ?[0-9]", r"\bsqrt\b", r"\bmod [0-9]", r"\bsum_",
    ),
    "reasoning": (
        r"step[ -]by[ -]step", r"\bthink (carefully|through)\b", r"\breasoning\b", r"\bjustify\b",
        r"\bexplain why\b", r"\banaly[sz]e\b", r"\bderive\b", r"\btrade-?offs?\b",
        r"\bpros and cons\b", r"\broot cause\b",
    ),
    "classify": (
        r"\bclassif", r"\bcategori[sz]", r"\bsentiment\b", r"\bone label\b", r"\bthe label\b",
        r"\blabel:", r"\bexactly one (word|label|category)\b", r"\bintent\b",
    ),
    "extract": (
        r"\bextract", r"\bparse\b", r"\bpull out\b", r"\bstructured data\b", r"\bjson\b",
        r"\bkey-value\b",
    ),
    "format": (
        r"\bconvert", r"\breformat", r"\bformat (this|the|it|as)\b",
        r"\bto (csv|json|markdown|yaml|xml)\b", r"\bas a table\b", r"\bnormali[sz]e\b",
    ),
    "translate": (
        r"\btranslat",
        r"\binto (english|french|german|spanish|italian|dutch|japanese|chinese)\b",
    ),
    "summarise": (r"\bsummar", r"\btl;?dr\b", r"\bdigest\b", r"\bkey points\b", r"\bcondense"),
    "yesno": (
        r"\byes or no\b", r"\byes/no\b", r"\btrue or false\b",
        r"\banswer (only )?(with )?(yes|no)\b",
    ),
    "rewrite": (
        r"\brewrite", r"\brephrase", r"\bpolish", r"\bproofread", r"\bparaphrase",
        r"\bfix (the )?(grammar|spelling|typos)\b",
    ),
    "creative": (
        r"\bwrite (a|an|me a) [a-z -]*(story|poem|song|blurb|slogan|tagline|haiku|copy)\b",
        r"\bmarketing copy\b", r"\bcreative\b", r"\bbrainstorm", r"\bslogan", r"\bblurb\b",
    ),
    "multistep": (
        r"\bstep [0-9]", r"\bmulti-?step\b", r"\bsub-?tasks?\b", r"\bfirst,.+ then\b",
        r"\bplan (the|a|your)\b",
    ),
    # an arithmetic word problem: a question about quantities (with `quantities`, the guard DIF-018)
    "wordproblem": (
        r"\bhow (many|much|long|far|old)\b", r"\bin total\b", r"\baltogether\b",
        r"\bleft over\b", r"\bremaining\b", r"\bpercent", r"\btwice as\b", r"\bhalf (of|as)\b",
        r"\bper (hour|day|week|month|year|minute|item|person|kilogram|kg|pound|mile)\b",
        r"\bwhat is the (total|average|sum|difference|product|cost|price|profit)\b",
    ),
    # answer-format cue: the answer is one of the listed options
    "choice": (
        r"\n ?\(?[abcde][.):] ", r"\bwhich of the following\b",
        r"\bchoose (one|the (correct|best))\b", r"\bmultiple[ -]choice\b",
    ),
    "qa": (
        r"\bcontext:", r"\bpassages?\b", r"\bbased on the (context|document|text)\b",
        r"\busing only\b", r"\bquestion:",
    ),
}  # fmt: skip


def caseless(pattern: str) -> str:
    """Make a lowercase ASCII pattern match either case by character classes ([cC], [a-zA-Z]),
    not by a case-insensitive flag: RE2 folds some non-ASCII letters (the Kelvin sign) that
    Python's ASCII mode does not, so classes are the only way both engines agree exactly."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif ch == "[":
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            extra = "A-Z" if "a-z" in body else "".join(c.upper() for c in body if "a" <= c <= "z")
            out.append(f"[{body}{extra}]")
            i = end + 1
        elif "a" <= ch <= "z":
            out.append(f"[{ch}{ch.upper()}]")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


CUES: dict[str, str] = {name: caseless("|".join(parts)) for name, parts in _CUE_PARTS.items()}
# Cues are found in two steps, identical in both engines: every non-overlapping match of all cue
# patterns together, then each cue's own pattern searched within those matched strings.
CUE_SCAN = "|".join(f"(?:{p})" for p in CUES.values())

# Size edges: a value turns on one "at least" feature per edge it reaches (bin:user_chars>=200),
# so a size enters cumulatively: each step up adds to the steps below it, and a weight learnt on
# many short prompts carries over to the few longer ones, instead of each bin learning alone.
# Binary features keep the classifier's arithmetic identical in numpy and here.
BINS: dict[str, tuple[int, ...]] = {
    "user_chars": (50, 100, 200, 350, 500, 750, 1000, 1500, 2000, 5000, 10000),
    "quantities": (1, 2, 3, 5, 8),
    "constraints": (1, 2, 4, 8),
    "system_chars": (1, 500, 2000, 5000, 10000, 20000),
    "message_count": (2, 3, 5, 9),
    "max_tokens": (17, 65, 257, 1025, 4097),
}

# Counts over the head of the last user message: numbers (the quantities of a word problem) and
# constraints (instruction phrases and list items), each a number of non-overlapping matches.
QUANTITY_PATTERN = r"[0-9]+([.,][0-9]+)*"
CONSTRAINT_PATTERN = caseless(
    r"\b(must|never|always|at least|at most|exactly|no more than|without|ensure|make sure|do not"
    r"|required|avoid)\b|\n *([-*]|[0-9]+[.)]) "
)
NON_ASCII_PATTERN = r"[\x00-\x7F]+"  # removed: what is left are the non-ASCII characters
NON_ASCII_SHARE = 5  # the text counts as non-ASCII (another script) from 1 in 5 characters

FLAGS = ("has_tools", "json_output", "has_system", "non_ascii")

_COMPILED_CUES = {name: re.compile(p, re.ASCII) for name, p in CUES.items()}
_CUE_SCAN = re.compile(CUE_SCAN, re.ASCII)
_TOKEN_RE = re.compile(TOKEN_PATTERN, re.ASCII)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN, re.ASCII)
_CONSTRAINT_RE = re.compile(CONSTRAINT_PATTERN, re.ASCII)
_NON_ASCII_RE = re.compile(NON_ASCII_PATTERN, re.ASCII)
_TEMPLATE_RE = tuple((re.compile(p, re.ASCII), r) for p, r in TEMPLATE_STEPS)


def template_id(system_text: str | None) -> str | None:
    """Requests whose system prompts differ only in masked spans share a template id."""
    if system_text is None:
        return None
    text = system_text[:TEMPLATE_SOURCE_CHARS]
    for pattern, replacement in _TEMPLATE_RE:
        text = pattern.sub(replacement, text)
    text = text[:TEMPLATE_CHARS].strip(" ")
    return "t" + hashlib.md5(text.encode("utf-8")).hexdigest()[:12]


@lru_cache(maxsize=512)
def _system_view(text: str) -> tuple[str | None, frozenset[str], frozenset[str]]:
    """Template id, cues and tokens of a system prompt: memoised, as a few prompts serve most
    traffic."""
    return template_id(text), frozenset(cues_of(text)), frozenset(tokens_of(text))


def cues_of(text: str) -> set[str]:
    found = [m.group(0) for m in _CUE_SCAN.finditer(text[:HEAD_CHARS])]
    return {name for name, p in _COMPILED_CUES.items() if any(p.search(m) for m in found)}


def counts_of(text: str) -> dict[str, Any]:
    """Quantities, constraints and the non-ASCII flag of a user text (its first HEAD_CHARS)."""
    head = text[:HEAD_CHARS]
    other = len(_NON_ASCII_RE.sub("", head))
    return {
        "quantities": sum(1 for _ in _QUANTITY_RE.finditer(head)),
        "constraints": sum(1 for _ in _CONSTRAINT_RE.finditer(head)),
        "non_ascii": other > 0 and other * NON_ASCII_SHARE >= len(head),
    }


def tokens_of(text: str) -> set[str]:
    return {
        t.lower()  # tokens are ASCII: lower() is exactly DuckDB's lower() here
        for t in _TOKEN_RE.findall(text[:TOKEN_CHARS])
        if len(t) <= MAX_TOKEN_CHARS
    }


@lru_cache(maxsize=1 << 16)
def word_hash(word: str) -> str:
    """The stable hash of a (lower-case) word: DuckDB's left(md5(salt || word), 16) too."""
    return hashlib.md5((WORD_HASH_SALT + word).encode("utf-8")).hexdigest()[:WORD_HASH_CHARS]


def bins_of(name: str, value: int | None) -> set[str]:
    """The size features of one value: an "at least" feature per edge reached, or "none"."""
    if value is None:
        return {f"bin:{name}:none"}
    return {f"bin:{name}>={edge}" for edge in BINS[name] if value >= edge}


def _json_text(value: Any) -> str | None:
    """The text of a JSON scalar as DuckDB's json_extract_string renders it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def content_text(content: Any) -> str | None:
    """Ingest's reading of a content value: a string, or the joined `text` of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_json_text(p.get("text")) if isinstance(p, Mapping) else None for p in content]
        return "".join(p for p in parts if p is not None)
    return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def request_features(request: Mapping[str, Any]) -> dict[str, Any]:
    """Request-time features of a request body, or of a log line in advisor's envelope."""
    body = _mapping(request.get("request")) or request
    meta, env_meta = _mapping(body.get("metadata")), _mapping(request.get("metadata"))
    tags = request.get("tags")
    raw = body.get("messages")
    # A message that is not an object reads as an empty user message, as ingest stores it.
    messages = [_mapping(m) for m in raw] if isinstance(raw, list) else []
    roles = [("user" if m.get("role") is None else str(m.get("role")), m) for m in messages]
    system = content_text(body.get("system")) if body.get("system") is not None else None
    if system is None:
        firsts = [m for role, m in roles if role in ("system", "developer")]
        system = (content_text(firsts[0].get("content")) or "") if firsts else None
    users = [m for role, m in roles if role == "user"]
    user = (content_text(users[-1].get("content")) or "") if users else ""
    tools = body.get("tools")
    tools_count = len(tools) if isinstance(tools, list) else None
    fmt = body.get("response_format")
    response_format = fmt.get("type") if isinstance(fmt, Mapping) else fmt
    response = _mapping(request.get("response"))
    view = _system_view(system) if system is not None else (None, frozenset(), frozenset())
    return {
        "model": _first(body.get("model"), request.get("model"), response.get("model")),
        "provider": request.get("provider"),
        "feature": _first(
            request.get("feature"),
            tags[0] if isinstance(tags, list) and tags else None,
            meta.get("feature"),
            env_meta.get("feature"),
        ),
        "template_id": view[0],
        "system_text": system,
        "user_text": user,
        "system_chars": len(system) if system is not None else 0,
        "user_chars": len(user),
        "has_system": system is not None,
        "message_count": sum(1 for role, _ in roles if role not in ("system", "developer")),
        "tools_count": tools_count,
        "has_tools": bool(tools_count),
        "json_output": response_format in ("json_object", "json_schema"),
        "max_tokens": _int(_first(body.get("max_completion_tokens"), body.get("max_tokens"))),
        **counts_of(user),
        **{f"cue_{name}": False for name in CUES},
        **{f"cue_{name}": True for name in view[1] | cues_of(user)},
        "system_tokens": view[2],
    }


def active_features(feats: Mapping[str, Any]) -> set[str]:
    """The names of the classifier's binary features that are on for one request."""
    names = {f"cue:{c}" for c in CUES if feats.get(f"cue_{c}")}
    for name in BINS:
        names |= bins_of(name, feats[name])
    names |= {f"flag:{f}" for f in FLAGS if feats.get(f)}
    if feats.get("template_id"):
        names.add(f"tmpl:{feats['template_id']}")
    words = set(feats.get("system_tokens") or ()) | tokens_of(feats.get("user_text") or "")
    names |= {f"tok:{w}" for w in words}
    names |= {f"tokh:{word_hash(w)}" for w in words}
    return names


@dataclass(frozen=True)
class Classifier:
    """A multinomial logistic regression over binary features, temperature-calibrated."""

    names: tuple[str, ...]
    weights: tuple[tuple[float, float, float], ...]
    intercept: tuple[float, float, float]
    temperature: float
    index: Mapping[str, int] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Classifier:
        if data.get("format") != CLASSIFIER_FORMAT or tuple(data.get("classes", ())) != CLASSES:
            raise ValueError(f"not an {CLASSIFIER_FORMAT} classifier")
        names = tuple(str(f[0]) for f in data["features"])
        weights = tuple((float(f[1][0]), float(f[1][1]), float(f[1][2])) for f in data["features"])
        b = data["intercept"]
        return cls(
            names,
            weights,
            (float(b[0]), float(b[1]), float(b[2])),
            float(data["temperature"]),
            {n: i for i, n in enumerate(names)},
        )

    def predict(self, active: set[str]) -> tuple[str, int, tuple[int, int, int], list[str]]:
        """(difficulty, confidence in millionths, probabilities in millionths, top features)."""
        columns = sorted(self.index[n] for n in active if n in self.index)
        z = [0.0, 0.0, 0.0]
        for j in columns:  # summed in column order, as scipy's sparse product does
            w = self.weights[j]
            z = [z[0] + w[0], z[1] + w[1], z[2] + w[2]]
        z = [(z[k] + self.intercept[k]) / self.temperature for k in range(3)]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = e[0] + e[1] + e[2]
        probs = tuple(math.floor(v / total * MICRO + 0.5) for v in e)
        best = max(range(3), key=lambda k: (probs[k], k))  # ties go to the harder class
        contrib = [
            (self.weights[j][best] - (sum(self.weights[j]) / 3), self.names[j]) for j in columns
        ]
        contrib.sort(key=lambda c: (-c[0], c[1]))
        reasons = [name for value, name in contrib[:3] if value > 0]
        return CLASSES[best], probs[best], (probs[0], probs[1], probs[2]), reasons


@dataclass(frozen=True)
class Guard:
    id: str
    label: str
    priority: int
    when: Condition


@dataclass(frozen=True)
class Decision:
    model: str  # the model name to call: the routed target, or the request's own model
    routed: bool
    original_model: str | None
    model_key: str | None  # the price-table key of the original model (None = unknown)
    routed_model: str | None  # the key of the model that serves it (None = unknown)
    difficulty: str
    confidence: float
    rule: str | None  # the guard or route rule that decided, if any
    reasons: tuple[str, ...] = ()
    alias: str | None = None  # LiteLLM model-group alias of the route, if routed


def route_alias(source: str, target: str) -> str:
    """The LiteLLM model-group / Portkey target name of one route."""
    return f"advisor-{source}-to-{target}"


def deployment_group(
    name: str, provider: str | None, key: str, target: str, providers: Mapping[str, str]
) -> str | None:
    """The gateway group that serves a route from the logged model `name` (on `provider`) to
    `target`, on that name's own provider: the shared route group when the name is served by its
    price-table provider; else a group of `name`'s own (an Azure deployment goes to an Azure
    deployment of the cheaper model, never to OpenAI); None when the route would leave the
    deployment's provider (a cross-provider rule), so that the request stays as it is."""
    home = providers.get(key)
    if provider is None or provider == home:
        return route_alias(key, target)
    return route_alias(name, target) if providers.get(target) == home else None


def _resolve_guards(matched: Sequence[Guard]) -> str:
    top = max(g.priority for g in matched)
    return max((g.label for g in matched if g.priority == top), key=SEVERITY.__getitem__)


class Router:
    """Decides routes from an exported router document (see advisor.export.router)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if spec.get("kind") != "router" or spec.get("schema_version") != ROUTER_SCHEMA_VERSION:
            raise ValueError("not an advisor router document (kind: router, schema_version: 1)")
        self.spec = spec
        self.models = {str(k).lower(): v for k, v in (spec.get("models") or {}).items()}
        self.by_provider = {
            str(k).lower(): v for k, v in (spec.get("models_by_provider") or {}).items()
        }
        self.keys = set(spec.get("model_keys") or [])
        self.guards = [
            Guard(g["id"], g["label"], int(g.get("priority", 0)), parse(g["when"]))
            for g in spec.get("guards") or []
        ]
        self.rules = list(spec.get("rules") or [])
        self.classifier = Classifier.from_dict(spec["classifier"])
        self.aliases = dict(spec.get("aliases") or {})
        self.providers = dict(spec.get("providers") or {})
        # logged name (any case) -> (its logged spelling, the provider that served it)
        self.deployments = {
            str(k).lower(): (str(k), v) for k, v in (spec.get("model_providers") or {}).items()
        }

    def model_key(self, model: str | None, provider: str | None = None) -> str | None:
        if model is None:
            return None
        name = model.lower()
        if provider and f"{provider.lower()}/{name}" in self.by_provider:
            return self.by_provider[f"{provider.lower()}/{name}"]
        if name in self.models:
            return self.models[name]
        stripped = re.sub(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|[-@]latest)$", "", name)
        return stripped if stripped in self.keys else None

    def decide(self, request: Mapping[str, Any]) -> Decision:
        feats = request_features(request)
        model = feats["model"]
        key = self.model_key(model, feats["provider"])
        feats["model_key"] = key
        difficulty, conf, _, reasons = self.classifier.predict(active_features(feats))
        base = {
            "original_model": model,
            "model_key": key,
            "routed_model": key,
        }
        matched = [g for g in self.guards if evaluate(g.when, feats)]
        if matched:
            label = _resolve_guards(matched)
            rule = ",".join(g.id for g in matched)
            return Decision(
                model or "",
                False,
                difficulty=label,
                confidence=1.0,
                rule=rule,
                reasons=tuple(g.id for g in matched),
                **base,
            )
        confidence = conf / MICRO
        for rule in self.rules:
            if self._matches(rule["match"], feats, difficulty, conf):
                target = rule["route_to"]
                return Decision(
                    target,
                    True,
                    difficulty=difficulty,
                    confidence=confidence,
                    rule=rule["id"],
                    reasons=tuple(reasons),
                    alias=self.aliases.get(f"{key}>{target}"),
                    **{**base, "routed_model": target},
                )
        return Decision(
            model or "",
            False,
            difficulty=difficulty,
            confidence=confidence,
            rule=None,
            reasons=tuple(reasons),
            **base,
        )

    def gateway_group(self, decision: Decision) -> str | None:
        """The LiteLLM model group (Portkey target) to call for a routed decision, on the
        provider that served the requested name in the logs; None = call the request's own model
        (not routed, or the route would take the traffic to another provider)."""
        if not decision.routed or decision.model_key is None or decision.routed_model is None:
            return None
        name = decision.original_model or ""
        spelled, provider = self.deployments.get(name.lower(), (name, None))
        return deployment_group(
            spelled, provider, decision.model_key, decision.routed_model, self.providers
        )

    @staticmethod
    def _matches(
        match: Mapping[str, Any], feats: Mapping[str, Any], difficulty: str, conf: int
    ) -> bool:
        for name, value in match.items():
            if name == "model":
                if feats["model_key"] != value:
                    return False
            elif name == "difficulty":
                if difficulty != value:
                    return False
            elif name == "min_confidence":
                if conf < math.floor(float(value) * MICRO + 0.5):
                    return False
            elif feats.get(name) != value:
                return False
        return True


def load_router(path: str | Path) -> Router:
    """Load an exported router file (YAML from `advisor export router`, or the same as JSON)."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".json"):
        spec = json.loads(text)
    else:
        import yaml  # PyYAML only; loaded lazily so JSON users need nothing else

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when available
        spec = yaml.load(text, Loader=loader)  # a safe loader either way
    return Router(spec)
