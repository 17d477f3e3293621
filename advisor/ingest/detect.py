"""Which JSON format a file is, from the keys of its first record; and, for a file that is none of
them, an error naming the formats and what the closest ones were missing.

A JSON-lines file is judged by its first non-blank line; a multi-line JSON document (whose first
line alone does not parse) by the keys its first 64 KiB name. A source format matches when all
its keys are present; advisor's envelope (`jsonl`) is the fallback for any object with one of its
own keys, and for a file whose first line is not a JSON object at all (its lines are then
quarantined one by one, each with its reason).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from advisor.errors import UnreadableFile
from advisor.ingest import exports, openai_batch


@dataclass(frozen=True)
class Signature:
    """A JSON format: the keys its first record has; any one of `alternatives` may stand in for
    the keys (e.g. a Batch output line or a Batch input line)."""

    format: str
    keys: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()

    def key_sets(self) -> tuple[tuple[str, ...], ...]:
        return (self.keys, *self.alternatives)


# Source formats, tried in order before the envelope.
SIGNATURES: list[Signature] = [
    Signature("otel_genai", ("resourceSpans",)),  # OTLP JSON export requests
    # OpenAI Batch API output lines, or input lines
    Signature("openai_batch", openai_batch.OUTPUT_KEYS, (openai_batch.INPUT_KEYS,)),
    # the gateway and observability exports (ingest.exports), by any of their key sets
    *(
        Signature(name, tuple(sorted(first)), tuple(tuple(sorted(ks)) for ks in rest))
        for name, (first, *rest) in exports.SIGNATURES.items()
    ),
]
# advisor's envelope: any of these keys makes a record one (docs/logging-format.md); a missing
# one is named from the first three
_ENVELOPE = Signature("jsonl", ("timestamp", "request", "response"))
_ENVELOPE_KEYS = {"timestamp", "request", "response", "model", "messages", "contents", "usage"}
_KEY = re.compile(rb'"((?:[^"\\]|\\.){1,64})"\s*:')


def first_keys(head: bytes) -> tuple[set[str], bool]:
    """The keys of a file's first record, and whether they are exact (the first line is a JSON
    object) rather than every key its head names (a pretty-printed document)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    first = text.split(b"\n", 1)[0]
    try:
        value = json.loads(first)
    except ValueError:
        return {k.decode("utf-8", "replace") for k in _KEY.findall(text)}, False
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set(value[0]), True
    return (set(value), True) if isinstance(value, dict) else (set(), False)


def sniff(name: str, head: bytes) -> str:
    """The JSON format of a file from its first bytes (see the module docstring)."""
    keys, exact = first_keys(head)
    for signature in SIGNATURES:
        if any(set(ks) <= keys for ks in signature.key_sets()):
            return signature.format
    if not exact or keys & _ENVELOPE_KEYS:
        return "jsonl"
    raise UnreadableFile(name, no_match_reason(keys))


def no_match_reason(keys: set[str]) -> str:
    """Why a record with these keys is no known format: the formats, and the keys that the
    closest ones (the largest share of their keys present) lack."""
    best: dict[str, tuple[float, list[str]]] = {}  # format -> its closest key set
    for signature in [_ENVELOPE, *SIGNATURES]:
        for ks in signature.key_sets():
            share = sum(k in keys for k in ks) / len(ks)
            if share > best.get(signature.format, (-1.0, []))[0]:
                best[signature.format] = (share, [k for k in ks if k not in keys])
    top = max(share for share, _ in best.values())
    closest = "; ".join(
        f"{fmt} (missing {', '.join(missing)})"
        for fmt, (share, missing) in best.items()
        if share == top
    )
    shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
    return (
        f"matches no known format (its first record has the keys {shown or 'none'}); "
        f"JSON formats: {', '.join(best)}, and csv/parquet with --map; "
        + (f"closest: {closest}; " if top > 0 else "it has none of their keys; ")
        + "force a format with --format"
    )
