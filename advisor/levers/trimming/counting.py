"""Tokens a trim saves, measured by re-tokenising only what changed.

tiktoken's pre-tokeniser (o200k_base and cl100k_base) never joins a line break to the
non-space character after it, except `/` (o200k_base's punctuation pieces may run on into a
`/`). So a text's token count is the sum of the counts of its pieces split after a line break
before such a character, and the tokens a trim saves are the counts of the pieces it removed
minus those it added: unchanged lines are never tokenised, and a piece seen before (a line of a
template) is counted once. Without an encoding file the count is estimated from UTF-8 length.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from advisor.tokens import BYTES_PER_TOKEN, get_encoding, map_threads

_PIECE = re.compile(r"\n(?=[^\s/])")
EXACT = ("o200k_base", "cl100k_base")


def pieces(text: str) -> list[str]:
    """`text` split where tiktoken's pre-tokeniser always splits (see the module docstring)."""
    parts = _PIECE.split(text)
    return [p + "\n" for p in parts[:-1]] + parts[-1:]


class TokenDiff:
    """Counts tokens saved between versions of texts under one encoding, caching piece counts."""

    def __init__(self, encoding: str, cache_chars: int = 200_000_000) -> None:
        self.encoding = encoding if encoding in EXACT else "o200k_base"
        self.enc = get_encoding(self.encoding)
        self.exact = self.enc is not None
        self.counts: dict[str, int] = {}
        self.cache_chars = self.room = cache_chars

    def saved(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """tokens(before) - tokens(after) for each (before, after) pair."""
        diffs: list[dict[str, int]] = []
        for before, after in pairs:
            if before == after:
                diffs.append({})
                continue
            removed = Counter(pieces(before))
            removed.subtract(pieces(after))
            diffs.append({p: n for p, n in removed.items() if n})
        self._count({p for d in diffs for p in d if p not in self.counts})
        return [sum(self.counts[p] * n for p, n in d.items()) for d in diffs]

    def tokens(self, texts: Sequence[str]) -> list[int]:
        """Whole token counts (of texts removed whole, e.g. a duplicated message)."""
        return self.saved([(t, "") for t in texts])

    def _count(self, todo: set[str]) -> None:
        ordered = sorted(todo)
        size = sum(map(len, ordered))
        if size > self.room:  # bounded memory: forget the pieces counted so far
            self.counts.clear()
            self.room = self.cache_chars
        if self.enc is None:
            found = [round(len(p.encode("utf-8")) / BYTES_PER_TOKEN) for p in ordered]
        else:
            enc = self.enc
            found = map_threads(lambda p: len(enc.encode_ordinary(p)), ordered)
        for piece, n in zip(ordered, found, strict=True):
            self.counts[piece] = n
        self.room -= size
