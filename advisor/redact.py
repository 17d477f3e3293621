"""Short, redacted excerpts of log text: the only form in which prompt text appears in outputs.

Secrets (API keys, bearer tokens, long hex/base64 tokens), emails, phone numbers and card-like
digit runs are masked before truncation, so a cut can never leave half a secret visible.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]{2,}-)?[A-Za-z0-9_-]{16,}"), "[KEY]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[KEY]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), "[KEY]"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "[KEY]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}"), "Bearer [KEY]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[TOKEN]"),
    (re.compile(r"(?i)\b(api[_-]?key|secret|password|token)(\s*[:=]\s*)\S{6,}"), r"\1\2[KEY]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[NUMBER]"),
    (
        re.compile(
            r"(?<![\w])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?"
            r"\d{3,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?(?![\w])"
        ),
        "[PHONE]",
    ),
    (re.compile(r"\b[A-Fa-f0-9]{32,}\b"), "[HEX]"),
]


def redact(text: str) -> str:
    """Mask secrets and personal data in a text."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def excerpt(text: str | None, limit: int = 160) -> str:
    """A redacted, whitespace-folded excerpt of at most `limit` characters."""
    if not text:
        return ""
    folded = " ".join(redact(text).split())
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"
