"""Masking secrets and personal data: the one place where log text is made fit to leave the store.

The patterns are data (rules/redaction.yaml: API keys and tokens, private keys, credentials after
their names, e-mails, phone, card, SSN and IBAN numbers, names after a cue), validated on load.
Every rule matches the original text and overlapping matches merge into one mask, so a slice of a
text (`redact(text, start, end)`) is masked exactly as the whole text would be: a cut never leaves
half a secret visible, and a span that lost its cue ("password" before it) is still masked.

`excerpt` gives the short, folded excerpts reports show; `scrub` masks every string of a nested
structure (what `Analysis.redacted` applies to everything analysis.json carries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from advisor.errors import RuleError
from advisor.ruleset import default_rules_dir, load_model, rule_files


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_regex)]  # a pattern that compiles, checked on load


class PassCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    secret: str


class RuleCases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pass_: tuple[PassCase | str, ...] = Field(alias="pass", min_length=1)
    fail: tuple[str, ...] = Field(min_length=1)


class RedactionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^RED-\d{3}$")
    title: str
    label: str = Field(pattern=r"^\[[A-Z ]+\]$")  # never matched by a rule: redaction is idempotent
    pattern: Regex
    keywords: tuple[str, ...] = ()  # lower case; the rule runs only on texts holding one
    # words that are never what the rule masks: a match starting with one is left alone
    # (RED-024: "Hi Team", "I am Python", "Thanks, Monday" are not names)
    not_words: tuple[str, ...] = ()
    rationale: str
    source: str
    deprecated: bool = False
    cases: RuleCases


class AllowRule(BaseModel):
    """Text that is never masked: advisor's own identifiers that look like secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^RED-\d{3}$")
    title: str
    pattern: Regex
    rationale: str
    cases: RuleCases


class RedactionFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["redaction"]
    title: str | None = None
    rules: tuple[RedactionRule, ...]
    allow: tuple[AllowRule, ...] = ()
    ordinary: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Compiled:
    id: str
    label: str
    regex: re.Pattern[str]
    keywords: tuple[str, ...] = ()  # a fast pre-check (as gitleaks does): Python's re is slow
    not_words: frozenset[str] = frozenset()  # lower case: a match whose first word is one is kept


_FIRST_WORD = re.compile(r"[^\s'’-]+")


def _first_word(text: str) -> str:
    m = _FIRST_WORD.match(text)
    return m.group().lower() if m else ""


def _spans(
    rules: tuple[_Compiled, ...], text: str, allow: tuple[re.Pattern[str], ...] = ()
) -> list[tuple[int, int, str]]:
    """Masked (start, end, label) spans of `text`, merged and in order; a match that lies
    inside an allowed span is not masked."""
    kept = [m.span() for regex in allow for m in regex.finditer(text)]
    lower = text.lower()
    found = []
    for rule in rules:
        if rule.keywords and not any(k in lower for k in rule.keywords):
            continue
        has_secret = "secret" in rule.regex.groupindex
        for m in rule.regex.finditer(text):
            start, end = m.span("secret") if has_secret and m.group("secret") else m.span()
            if rule.not_words and _first_word(text[start:end]) in rule.not_words:
                continue
            if end > start and not any(a <= start and end <= b for a, b in kept):
                found.append((start, end, rule.label))
    found.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    for start, end, label in found:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, label))
    return merged


@dataclass(frozen=True)
class Redactor:
    rules: tuple[_Compiled, ...]
    allow: tuple[re.Pattern[str], ...] = ()

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        return _spans(self.rules, text, self.allow)

    def redact(self, text: str, start: int = 0, end: int | None = None) -> str:
        """`text[start:end]` with every mask of the whole text that touches it applied."""
        end = len(text) if end is None else min(end, len(text))
        out, at = [], start
        for s, e, label in self.spans(text):
            if e <= start or s >= end:
                continue
            out.append(text[at:s] if s > at else "")
            out.append(label)
            at = max(at, e)
        out.append(text[at:end] if at < end else "")
        return "".join(out)


def load_redactor(rules_dir: Path) -> Redactor:
    """Every active redaction rule under `rules_dir`, validated (ids unique, patterns compile)."""
    compiled: list[_Compiled] = []
    allow: list[re.Pattern[str]] = []
    seen: dict[str, Path] = {}
    for path in rule_files(rules_dir, "redaction"):
        data = load_model(path, RedactionFile)
        for rule_id in [r.id for r in data.rules] + [r.id for r in data.allow]:
            if rule_id in seen:
                raise RuleError(f"{path}: rule id {rule_id} is already used in {seen[rule_id]}")
            seen[rule_id] = path
        compiled += [
            _Compiled(r.id, r.label, re.compile(r.pattern), r.keywords, _lower(r.not_words))
            for r in data.rules
            if not r.deprecated
        ]
        allow += [re.compile(r.pattern) for r in data.allow]
    if not compiled:
        raise RuleError(
            f"no redaction rules under {rules_dir}",
            hint="copy rules/redaction.yaml from advisor into your rules folder",
        )
    return Redactor(tuple(compiled), tuple(allow))


def _lower(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w.lower() for w in words)


@lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    return load_redactor(default_rules_dir())


def redact(text: str, start: int = 0, end: int | None = None) -> str:
    """Mask secrets and personal data in `text[start:end]` (the shipped rules)."""
    return default_redactor().redact(text, start, end)


def excerpt(text: str | None, limit: int = 160, *, start: int = 0, end: int | None = None) -> str:
    """A redacted, whitespace-folded excerpt of `text[start:end]`, at most `limit` characters."""
    if not text:
        return ""
    folded = " ".join(redact(text, start, end).split())
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"


def scrub(value: Any) -> Any:
    """Every string inside nested dicts, lists and tuples redacted (keys are advisor's own)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v) for v in value)
    return value


# -- cases (tests/test_rule_cases.py) -------------------------------------------------------------


def pattern_rules(data: Any) -> Iterator[Mapping[str, Any]]:
    """Every rule with a `pattern` and `cases` inside a loaded rules file."""
    if isinstance(data, Mapping):
        if "pattern" in data and "cases" in data:
            yield data
            return
        for value in data.values():
            yield from pattern_rules(value)
    elif isinstance(data, list):
        for value in data:
            yield from pattern_rules(value)


def run_pattern_cases(rule: Mapping[str, Any]) -> list[str]:
    """Failures of one pattern rule's cases: a `pass` case ({text, secret}, or a text the pattern
    must find) whose secret survives this rule's mask, a `fail` text the rule would touch.
    Keywords apply as in use, so a pass case without one of them fails."""
    compiled = (
        _Compiled(
            str(rule["id"]),
            str(rule.get("label", "[X]")),
            re.compile(rule["pattern"]),
            not_words=_lower(rule.get("not_words") or ()),
        ),
    )
    cases = rule["cases"]
    failures = []
    for case in cases.get("pass") or []:
        if isinstance(case, Mapping):
            masked = Redactor(compiled).redact(case["text"])
            if case["secret"] in masked:
                failures.append(f"{rule['id']}: pass case keeps {case['secret']!r}: {masked!r}")
        elif not _spans(compiled, case):
            failures.append(f"{rule['id']}: pass case not matched: {case!r}")
    for text in cases.get("fail") or []:
        if _spans(compiled, text):
            failures.append(f"{rule['id']}: fail case matched: {text!r}")
    return failures
