"""How far a lever's own token counts can be trusted, calibrated against the logged usage.

The caching lever counts tokens itself (the block boundaries of shared prefixes). Its counts are
`exact` where the model's own tiktoken encoding is on disk, `approximate` where the provider's
tokenizer is not tiktoken's (o200k_base stands in for it), and `estimated` where no encoding file
could be loaded (4-byte pseudo-tokens). Counts that are not exact are calibrated against the
logged usage of the same requests: for a sample of requests whose input_tokens were logged, the
lever's count of the whole prompt (its message counts plus one role marker each) is compared with
the logged count, and the part of it that falls on the shared prefix gives the scale applied to
the lever's counts (token-weighted over the sample); the weighted quartiles of the per-request
ratios give the low and high scales the lever's figure is also computed at: its range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa

from advisor.levers.caching.prefix import Tokenizer

# Logged requests per model whose whole prompt is counted: bounds the tokenisation whatever the
# size of the log, and is plenty for quartiles.
SAMPLE = 200
MIN_REQUESTS = 20
SCALE_LIMITS = (0.25, 4.0)
# Scales assumed where fewer than MIN_REQUESTS requests have logged usage: a wide range.
UNCALIBRATED = (0.8, 1.25)
RANK = {"exact": 0, "approximate": 1, "estimated": 2}
_TOK_SCHEMA = pa.schema([("text_hash", pa.string()), ("tokens", pa.int64())])


@dataclass(frozen=True)
class TokenCounts:
    """How one model's tokens were counted, and the calibration applied to them."""

    model_key: str
    counts: str  # exact | approximate | estimated
    tokenizer: str
    why: str
    calibrated_on: str | None = None  # shared prefixes | whole prompts | None: not calibrated
    calibration_requests: int = 0  # logged requests the calibration compared
    scale: float = 1.0  # logged tokens per token of ours: the median ratio, applied
    low_scale: float = 1.0  # first quartile of the ratios
    high_scale: float = 1.0  # third quartile

    def scales(self) -> dict[str, float]:
        return {"point": self.scale, "low": self.low_scale, "high": self.high_scale}

    def row(self) -> dict[str, object]:
        return asdict(self)


def describe(key: str, encoding: str, provider: str | None, tok: Tokenizer) -> TokenCounts:
    """How the lever counts `key`'s tokens with `tok` (before calibration)."""
    if tok.enc is None:
        return TokenCounts(
            key,
            "estimated",
            "length: 4 bytes per token",
            "no tiktoken encoding files (set TIKTOKEN_CACHE_DIR for exact counts): "
            "length-based estimate",
        )
    if encoding != tok.encoding:
        return TokenCounts(
            key,
            "approximate",
            tok.encoding,
            f"{tok.encoding} approximates {provider or 'the provider'}'s tokenizer",
        )
    return TokenCounts(key, "exact", tok.encoding, f"{tok.encoding} is the model's own encoding")


def calibrate(
    con: duckdb.DuckDBPyConnection,
    requests: str,
    shared: np.ndarray,
    counts: list[TokenCounts],
    tok: Tokenizer,
    messages_sql: str,
    texts_sql: str,
) -> dict[str, TokenCounts]:
    """`counts` by model, those that are not exact calibrated on the requests of table
    `requests` (request_id, idx, model_key, input_tokens, logged) whose input_tokens were logged;
    `shared[idx]` is the lever's count of each request's shareable prefix.

    The scale that matters is the shared prefix's, and a prompt's unique rest may be text of
    another kind (code, another language): the rest is taken at the median ratio of prompts with
    no shared prefix (else of whole prompts), and the scale is the remainder over the shared
    count, token-weighted (cached tokens are summed, so long prefixes weigh more) over prompts
    at least half shared, with the weighted quartiles as its range; whole prompts where too few
    are half shared."""
    out = {c.model_key: c for c in counts}
    todo = sorted(k for k, c in out.items() if c.counts != "exact")
    if not todo:
        return out
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _tc_req AS
            SELECT request_id, idx, model_key, input_tokens FROM {requests}
            WHERE logged AND input_tokens > 0 AND model_key IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY model_key
                                       ORDER BY hash(request_id), request_id) <= ?""",
        [todo, SAMPLE],
    )
    texts = con.execute(
        f"""SELECT x.text_hash, x.text
            FROM (SELECT DISTINCT m.text_hash FROM _tc_req JOIN {messages_sql} m USING (request_id))
            JOIN {texts_sql} x USING (text_hash) ORDER BY x.text_hash"""
    ).fetchall()
    encoded = tok.encode([text or "" for _, text in texts])
    lengths = {"text_hash": [h for h, _ in texts], "tokens": [len(t) for t in encoded]}
    con.register("_tc_tok", pa.table(lengths, schema=_TOK_SCHEMA))
    con.register("_tc_shared", pa.table({"idx": np.arange(len(shared)), "shared": shared}))
    # One query over the sample: per request, logged tokens against the lever's count of the
    # whole prompt (its messages' tokens + a marker each) and of its shared prefix.
    rows = con.execute(
        f"""WITH per AS (
              SELECT q.model_key, any_value(q.input_tokens) AS logged,
                     sum(t.tokens + 1) AS whole, any_value(s.shared) AS shared
              FROM _tc_req q JOIN _tc_shared s USING (idx)
              JOIN {messages_sql} m USING (request_id) JOIN _tc_tok t USING (text_hash)
              GROUP BY q.request_id, q.model_key
            ), x AS (
              SELECT model_key, logged, whole, least(shared, whole) AS shared,
                     logged / whole AS ratio FROM per
            ), rest AS (
              SELECT model_key, CASE WHEN count(*) FILTER (WHERE shared = 0) >= {MIN_REQUESTS}
                                     THEN median(ratio) FILTER (WHERE shared = 0)
                                     ELSE median(ratio) END AS rest_ratio
              FROM x GROUP BY model_key
            ), ratios AS (
              SELECT 'part' AS basis, x.model_key,
                     (x.logged - (x.whole - x.shared) * r.rest_ratio) / x.shared AS ratio,
                     x.shared AS weight
              FROM x JOIN rest r USING (model_key) WHERE 2 * x.shared >= x.whole
              UNION ALL
              SELECT 'whole', model_key, ratio, whole FROM x
            ), cum AS (
              SELECT *, sum(weight) OVER (PARTITION BY basis, model_key ORDER BY ratio
                                          ROWS UNBOUNDED PRECEDING)
                        / sum(weight) OVER (PARTITION BY basis, model_key) AS upto
              FROM ratios
            ), stats AS (
              SELECT basis, model_key, count(*) AS n,
                     sum(ratio * weight) / sum(weight), min(ratio) FILTER (WHERE upto >= 0.25),
                     min(ratio) FILTER (WHERE upto >= 0.75)
              FROM cum GROUP BY ALL
            )
            SELECT * FROM stats ORDER BY model_key, basis"""
    ).fetchall()
    for table in ("_tc_tok", "_tc_shared"):
        con.unregister(table)
    con.execute("DROP TABLE IF EXISTS _tc_req")
    found = {(r[0], r[1]): r[2:] for r in rows}
    for key in todo:
        basis = "part" if found.get(("part", key), (0,))[0] >= MIN_REQUESTS else "whole"
        n, mid, q1, q3 = found.get((basis, key), (0, None, None, None))
        if n < MIN_REQUESTS:
            # too few requests with logged usage to calibrate: a wide range is assumed
            out[key] = replace(
                out[key],
                calibration_requests=int(n),
                low_scale=UNCALIBRATED[0],
                high_scale=UNCALIBRATED[1],
            )
            continue
        out[key] = replace(
            out[key],
            calibrated_on="shared prefixes" if basis == "part" else "whole prompts",
            calibration_requests=int(n),
            scale=_clip(mid),
            low_scale=min(_clip(q1), _clip(mid)),
            high_scale=max(_clip(q3), _clip(mid)),
        )
    return out


def _clip(value: float) -> float:
    low, high = SCALE_LIMITS
    return round(min(max(float(value), low), high), 4)


def summary(counts: list[TokenCounts]) -> str:
    """The least exact kind among `counts` (exact when there are none)."""
    return max((c.counts for c in counts), key=RANK.__getitem__, default="exact")
