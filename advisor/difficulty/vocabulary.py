"""The vocabulary the router may carry: which words of the logs become classifier features.

Every word feature the classifier keeps is written, as text, into the deployable router configs
(router.yaml and the LiteLLM / Portkey files built from it). A word read from prompts is therefore
vetted before it becomes a feature, by the policy of rules/difficulty.yaml (`vocabulary`):

- frequency: used in enough training requests;
- shape: no `exclude` pattern matches it (digits: ids, amounts, keys, dates);
- redaction: no rule of rules/redaction.yaml ever masks it in the training texts (a name after
  "Dear", a password after "password");
- not a proper noun: written capitalised mid-sentence in at most a set share of its uses (names
  of people, places and companies);
- spread, to be carried as a word: used by enough distinct users, under enough distinct templates
  (or features, for requests without a system prompt). Something typed by one user, or baked into
  one template, fails here however often it repeats.

A frequent word that passes every test but the spread (a word of one template's prompt, or of a
log without user ids) is carried as a salted hash (`tokh:`, routing.word_hash) when the policy
says so: the router still matches it, the file does not show it. A hash hides a random string;
it does not hide a guessable one, which is why the shape, redaction and proper-noun tests come
first. Analysis and router score with the same vetted features, so their decisions stay identical.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import duckdb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from advisor import routing as R
from advisor.redact import RuleCases, default_redactor


class ExcludePattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VOC-\d{3}$")
    title: str
    pattern: str  # searched in the lower-case word
    rationale: str
    cases: RuleCases


class VocabularyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VOC-\d{3}$")
    title: str
    rationale: str
    min_requests: int = Field(ge=1)
    min_users: int = Field(ge=2)
    min_contexts: int = Field(ge=2)
    max_words: int = Field(ge=0)
    max_capitalised_share: float = Field(ge=0, le=1)
    scan_texts: int = Field(ge=1)
    hash_narrow_words: bool
    exclude: tuple[ExcludePattern, ...] = ()


@dataclass(frozen=True)
class Vetting:
    kept: list[int]  # token columns the router may carry as words, most frequent first
    hashed: list[int]  # token columns it may carry as hashes only
    withheld: int  # frequent enough, but kept out of the router altogether


_WORD = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_SENTENCE_START = frozenset(".!?:;\"'([{*#>-\n")


def _distinct(x: sparse.csr_matrix, groups: np.ndarray) -> np.ndarray:
    """Per column of x, the number of distinct groups (-1 = none) among the rows using it."""
    rows = np.flatnonzero(groups >= 0)
    if len(rows) == 0:
        return np.zeros(x.shape[1], dtype=np.int64)
    onehot = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, groups[rows])), shape=(x.shape[0], int(groups.max()) + 1)
    )
    return np.asarray((x.T @ onehot).getnnz(axis=1))


def _codes(values: list[object]) -> np.ndarray:
    index: dict[object, int] = {}
    return np.array([-1 if v is None else index.setdefault(v, len(index)) for v in values])


def _text_verdicts(texts: list[str], candidates: set[str], policy: VocabularyPolicy) -> set[str]:
    """Candidates that a redaction rule masks somewhere, or that read as proper nouns."""
    redactor = default_redactor()
    masked: set[str] = set()
    uses: Counter[str] = Counter()
    capitalised: Counter[str] = Counter()
    for text in texts:
        for start, end, _ in redactor.spans(text):
            if start >= R.TOKEN_CHARS:
                continue
            while start > 0 and text[start - 1].isascii() and text[start - 1].isalnum():
                start -= 1
            masked |= R.tokens_of(text[start : min(end, R.TOKEN_CHARS)])
        head = text[: R.TOKEN_CHARS]
        for m in _WORD.finditer(head):
            word = m.group(0)
            low = word.lower()
            if low not in candidates:
                continue
            before = head[: m.start()].rstrip(" \t")
            if not before or before[-1] in _SENTENCE_START:
                continue  # a capital at the start of a sentence says nothing
            uses[low] += 1
            capitalised[low] += word[0].isupper() and not word.isupper()
    nouns = {w for w, n in uses.items() if capitalised[w] > policy.max_capitalised_share * n}
    return (masked & candidates) | nouns


def vet(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    x: sparse.csr_matrix,
    names: list[str],
    policy: VocabularyPolicy,
) -> Vetting:
    """The token columns of `x` (rows of table `rows`: rn, request_id) the router may carry."""
    df = np.asarray(x.getnnz(axis=0))
    frequent = [
        i for i, n in enumerate(names) if n.startswith("tok:") and df[i] >= policy.min_requests
    ]
    who = con.execute(
        f"""SELECT r.user_id, coalesce(f.template_id, 'feature:' || f.feature)
            FROM {rows} b JOIN dif_features f USING (request_id)
            JOIN requests r USING (request_id) ORDER BY b.rn"""
    ).fetchall()
    users = _distinct(x, _codes([w[0] for w in who]))
    contexts = _distinct(x, _codes([w[1] for w in who]))
    excluded = [re.compile(p.pattern) for p in policy.exclude]
    shaped = [i for i in frequent if not any(p.search(names[i][4:]) for p in excluded)]
    texts = [
        str(r[0])
        for r in con.execute(
            f"""WITH used AS (SELECT f.system_hash, f.user_hash FROM {rows} b
                              JOIN dif_features f USING (request_id)),
                d AS (SELECT DISTINCT h FROM (SELECT system_hash AS h FROM used
                                              UNION ALL SELECT user_hash FROM used)
                      WHERE h IS NOT NULL ORDER BY h LIMIT {int(policy.scan_texts)})
                SELECT left(t.text, {R.TOKEN_CHARS + 100})
                FROM d JOIN texts t ON t.text_hash = d.h ORDER BY d.h"""
        ).fetchall()
    ]
    refused = _text_verdicts(texts, {names[i][4:] for i in shaped}, policy)
    vetted = sorted(
        (i for i in shaped if names[i][4:] not in refused), key=lambda i: (-df[i], names[i])
    )[: policy.max_words]
    spread = [
        i for i in vetted if users[i] >= policy.min_users and contexts[i] >= policy.min_contexts
    ]
    hashed = [i for i in vetted if i not in set(spread)] if policy.hash_narrow_words else []
    return Vetting(spread, hashed, len(frequent) - len(spread) - len(hashed))
