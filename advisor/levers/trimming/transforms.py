"""Lossless prompt trimming: text -> text transforms that keep a prompt's content.

Each transform removes only what carries no content for the model:
- `whitespace`: trailing spaces, runs of blank lines, a run of spaces inside a line (indentation
  and column alignment are structure and stay), blank lines at the start and end of a text;
- `pretty_json`: pretty-printed JSON objects/arrays minified by removing the whitespace between
  tokens (strings and number literals are kept byte for byte, so the parsed value is identical);
- `markdown_rules`: a long decorative rule (`==========`, `----------`) shortened to `---`, and a
  rule repeated with only blank lines between collapsed to one;
- `duplicates`: a paragraph (blank-line separated, at least `min_chars` long) that already
  appeared earlier in the same text is removed.
Fenced code blocks (```) are left alone by every transform except `pretty_json` (a ```json
fence holds JSON): spacing in code can be content. Transforms are idempotent and never lengthen
a text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("pretty_json", "whitespace", "duplicates", "markdown_rules")

_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.M)
# Patterns start with a literal where they can: Python's re then scans for it instead of trying
# every position (a lookbehind first made `whitespace` 10x slower).
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){2,}")
_INNER_SPACES = re.compile(r"  +(?=\S)")  # (indentation is skipped before it is applied)
_SENTENCE_GAP = re.compile(r"(?<=[.!?;:,])  (?=\S)")
_LEADING_BLANK = re.compile(r"(?:[ \t]*\n)+")
_RULE = re.compile(r"^[ \t]*([-=*_])\1{2,}[ \t]*$")  # ~~~ opens a fence
_JSON_START = re.compile(r"^[ \t]*[\[{]", re.M)
_JSON_GAP = re.compile(r'("(?:[^"\\]|\\.)*")|\s+', re.S)
_PARAGRAPH_GAP = re.compile(r"\n[ \t]*\n")
_DECODER = json.JSONDecoder()


def _outside_fences(text: str, edit: Callable[[str], str]) -> str:
    """`edit` applied to the parts of `text` outside fenced code blocks (an unclosed fence runs to
    the end of the text, as markdown renders it)."""
    if "```" not in text and "~~~" not in text:
        return edit(text)
    parts: list[str] = []
    pos, inside, fence = 0, False, ""
    for match in _FENCE.finditer(text):
        if not inside:
            parts.append(edit(text[pos : match.start()]))
            pos, inside, fence = match.start(), True, match.group(1)
        elif match.group(1) == fence:
            end = text.find("\n", match.end())
            end = len(text) if end < 0 else end
            parts.append(text[pos:end])
            pos, inside = end, False
    tail = text[pos:]
    parts.append(tail if inside else edit(tail))
    return "".join(parts)


def _trailing(match: re.Match[str]) -> str:
    """A line's trailing spaces go; a line holding one space only stays (a diff's context line)."""
    text, start = match.string, match.start()
    alone = start == 0 or text[start - 1] == "\n"
    return match.group() if alone and match.group() == " " else ""


def _inner_runs(part: str) -> str:
    """A run of spaces inside a line becomes one space, except indentation (also after a diff or
    list marker) and column alignment: a line with two runs or more, outside a pipe table, keeps
    them (the spacing tells which value sits under which heading), all but two spaces after a
    sentence's end (typewriter spacing)."""
    if "  " not in part:
        return part
    lines = part.split("\n")
    for i, line in enumerate(lines):
        if "  " not in line:
            continue
        body = line.lstrip(" \t")
        if body[:1] and not body[:1].isalnum() and body[1:2] == " ":  # a marker, then indentation
            body = body[1:].lstrip(" ")
        start = len(line) - len(body)
        runs = _INNER_SPACES.findall(body)
        if not runs:
            continue
        aligned = "|" not in line and len(runs) > 1
        lines[i] = line[:start] + (
            _SENTENCE_GAP.sub(" ", body) if aligned else _INNER_SPACES.sub(" ", body)
        )
    return "\n".join(lines)


def whitespace(text: str) -> str:
    def edit(part: str) -> str:
        part = _TRAILING.sub(_trailing, part)
        part = _BLANK_RUN.sub("\n\n", part)
        return _inner_runs(part)

    text = _outside_fences(text, edit).rstrip()
    lead = _LEADING_BLANK.match(text)
    return text[lead.end() :] if lead else text


def minify_json(segment: str) -> str:
    """`segment` (valid JSON) without the whitespace between its tokens."""
    return _JSON_GAP.sub(lambda m: m.group(1) or "", segment)


def json_segments(text: str) -> list[tuple[int, int]]:
    """(start, end) of every pretty-printed JSON object or array that starts a line of `text`."""
    found: list[tuple[int, int]] = []
    pos = 0
    for match in _JSON_START.finditer(text):
        start = match.end() - 1
        if start < pos:
            continue
        try:
            _, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        if "\n" in text[start:end]:
            found.append((start, end))
        pos = end
    return found


def json_blocks(text: str) -> str:
    if "{\n" not in text and "[\n" not in text:  # pretty-printed JSON opens a line
        return text
    out, pos = [], 0
    for start, end in json_segments(text):
        out.append(text[pos:start])
        out.append(minify_json(text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def markdown_rules(text: str) -> str:
    if not any(r in text for r in ("---", "===", "***", "___")):
        return text

    def edit(part: str) -> str:
        lines = part.split("\n")
        out: list[str] = []
        last_rule = False  # the last non-blank line kept was a rule
        for line in lines:
            if _RULE.match(line) and (not out or not out[-1].strip() or last_rule):
                if last_rule:  # a rule again after only blank lines: drop it and those lines
                    while out and not out[-1].strip():
                        out.pop()
                    continue
                out.append("---" if len(line.strip()) > 3 else line)
                last_rule = True
                continue
            if line.strip():
                last_rule = False
            out.append(line)
        return "\n".join(out)

    return _outside_fences(text, edit)


def duplicates(text: str, min_chars: int) -> str:
    """`text` without the later copies of a paragraph of at least `min_chars` characters (each
    dropped with the blank-line gap before it)."""
    pieces = _PARAGRAPH_GAP.split(text)
    gaps = _PARAGRAPH_GAP.findall(text)
    seen: set[str] = set()
    out = [pieces[0]]
    seen.add(pieces[0].strip())
    for gap, para in zip(gaps, pieces[1:], strict=True):
        key = para.strip()
        if len(key) >= min_chars and key in seen:
            continue
        seen.add(key)
        out += [gap, para]
    return "".join(out)


@dataclass(frozen=True)
class Trimmed:
    """One text after every transform, and how many characters each removed (in this order)."""

    text: str
    chars: Mapping[str, int]


def trim(text: str, kinds: tuple[str, ...], min_duplicate_chars: int) -> Trimmed:
    """`text` through the transforms named in `kinds`, in KINDS order: JSON before whitespace
    (which would otherwise eat the indentation JSON minifying removes anyway), rules after
    duplicates (dropping a repeated paragraph can bring two rules together). Passes repeat until
    nothing changes (each one only shortens the text): dropping a repeated paragraph can leave a
    pretty-printed JSON block that only the next pass minifies, and a trimmed text must come back
    unchanged when trimmed again."""
    steps: dict[str, Callable[[str], str]] = {
        "pretty_json": json_blocks,
        "whitespace": whitespace,
        "markdown_rules": markdown_rules,
        "duplicates": lambda t: duplicates(t, min_duplicate_chars),
    }
    chars = {kind: 0 for kind in KINDS if kind in kinds}
    changed = True
    while changed:
        changed = False
        for kind in chars:
            after = steps[kind](text)
            chars[kind] += len(text) - len(after)
            changed = changed or after != text
            text = after
    return Trimmed(text, chars)


def transform_rules(data: Any) -> Iterator[Mapping[str, Any]]:
    """Every rule with a `transform` and `cases` in a loaded rules file (its `transforms` list)."""
    if isinstance(data, Mapping):
        for rule in data.get("transforms") or []:
            if isinstance(rule, Mapping) and "transform" in rule and "cases" in rule:
                yield rule


def run_transform_cases(rule: Mapping[str, Any], min_duplicate_chars: int) -> list[str]:
    """Failures of one transform rule's cases: a `pass` case ({before, after}) whose text does not
    come out as `after`, a `fail` text the transform changes."""
    kind = str(rule["transform"])
    failures = []
    for case in rule["cases"].get("pass") or []:
        got = trim(case["before"], (kind,), min_duplicate_chars).text
        if got != case["after"]:
            failures.append(f"{rule['id']}: {case['before']!r} -> {got!r}, not {case['after']!r}")
    for text in rule["cases"].get("fail") or []:
        got = trim(text, (kind,), min_duplicate_chars).text
        if got != text:
            failures.append(f"{rule['id']}: fail case changed: {text!r} -> {got!r}")
    return failures
