"""Token counting: tiktoken where its encoding is on disk, a calibrated estimate where it is not.

Nothing here downloads: tiktoken is only asked for an encoding whose file is already in its cache
(TIKTOKEN_CACHE_DIR, or tiktoken's default cache folder). Without it, counts are estimated from the
UTF-8 length and marked `estimated`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from advisor.store import first_row, scalar

T = TypeVar("T")

ENCODING_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
DEFAULT_ENCODING = "o200k_base"
# Mean UTF-8 bytes per token of English/code text in o200k_base; only the starting point of an
# estimate, which is then calibrated against logged usage where the log has both.
BYTES_PER_TOKEN = 4.0
# Chat formatting overhead per message and per reply (OpenAI's documented accounting).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def _cache_dirs() -> list[Path]:
    dirs = []
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    return dirs


def encoding_available(name: str) -> bool:
    """True when tiktoken can load `name` from disk without touching the network."""
    if os.environ.get("ADVISOR_TOKENIZER") == "estimate":
        return False
    url = ENCODING_URLS.get(name)
    if url is None:
        return False
    key = hashlib.sha1(url.encode()).hexdigest()
    return any((d / key).is_file() for d in _cache_dirs())


@cache
def get_encoding(name: str) -> Any | None:
    """The tiktoken encoding, or None when it cannot be loaded offline."""
    if not encoding_available(name):
        return None
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception:  # a corrupt cache file or a tiktoken without that encoding: estimate instead
        return None


def map_threads(work: Callable[[str], T], texts: Sequence[str]) -> list[T]:
    """`work` over every text, one chunk per CPU on threads of its own (tiktoken releases the
    GIL). tiktoken's own batch call starts a future per text, which costs more than the encoding
    when texts are short: 2.6x slower on the 1M benchmark's texts."""
    threads = os.cpu_count() or 1
    step = max(1, -(-len(texts) // threads))
    chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
    if len(chunks) < 2:
        return [work(t) for t in texts]
    with ThreadPoolExecutor(len(chunks)) as pool:
        return [r for part in pool.map(lambda c: [work(t) for t in c], chunks) for r in part]


def count_texts(texts: Sequence[str], encoding: str = DEFAULT_ENCODING) -> list[int] | None:
    """Token counts of many texts, or None when the encoding is unavailable."""
    enc = get_encoding(encoding)
    if enc is None:
        return None
    return map_threads(lambda t: len(enc.encode_ordinary(t)), texts)


def estimate_tokens(text: str) -> int:
    """Length-based estimate used when no encoding is available (before calibration)."""
    return int(len(text.encode("utf-8")) / BYTES_PER_TOKEN + 0.5)


@dataclass
class TokenFill:
    """What the token step did: how many requests it counted, and how."""

    tokenized: int = 0
    estimated: int = 0
    unbilled: int = 0
    calibration: float | None = None  # logged / estimated, where the log had both


_BATCH = 20_000


def _count_missing(con: duckdb.DuckDBPyConnection, encoding: str) -> bool:
    """Count every text of `_need` rows lacking a count under `encoding`; False if unavailable."""
    todo = con.execute(
        """SELECT t.text_hash, t.text FROM texts t
           SEMI JOIN _need_texts n ON n.text_hash = t.text_hash AND n.encoding = ?
           ANTI JOIN text_tokens k ON k.text_hash = t.text_hash AND k.encoding = ?""",
        [encoding, encoding],
    )
    hashes: list[str] = []
    counted: list[int] = []
    # Inserts wait until the scan is done: a statement on this connection would end the scan.
    while batch := todo.fetchmany(_BATCH):
        counts = count_texts([text for _, text in batch], encoding)
        if counts is None:
            return False
        hashes.extend(h for h, _ in batch)
        counted.extend(counts)
    if hashes:
        table = pa.table({"text_hash": hashes, "tokens": pa.array(counted, pa.int64())})
        con.register("_counted", table)
        con.execute(
            "INSERT OR IGNORE INTO text_tokens SELECT text_hash, ?, tokens FROM _counted",
            [encoding],
        )
        con.unregister("_counted")
    return True


def fill_token_counts(con: duckdb.DuckDBPyConnection, encodings: Mapping[str, str]) -> TokenFill:
    """Give every request without logged usage a token count, from its text.

    `encodings` maps model_key -> tiktoken encoding name ('approx' for non-OpenAI tokenizers,
    counted with o200k_base and marked estimated). Each distinct text is counted once per
    encoding. Failed calls with no usage are not billed: 0 tokens, marked `unbilled`.
    """
    fill = TokenFill()
    con.execute(
        "UPDATE requests SET input_tokens = 0, output_tokens = 0, cache_read_tokens = 0, "
        "cache_write_tokens = 0, cache_write_1h_tokens = 0, token_source = 'unbilled' "
        "WHERE token_source IS NULL AND status = 'error' AND response_hash IS NULL"
    )
    fill.unbilled = _scalar(con, "SELECT count(*) FROM requests WHERE token_source = 'unbilled'")
    enc_rows = [(k, v) for k, v in encodings.items()]
    con.execute("CREATE OR REPLACE TEMP TABLE _enc (model_key VARCHAR, encoding VARCHAR)")
    if enc_rows:
        con.executemany("INSERT INTO _enc VALUES (?, ?)", enc_rows)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _need AS
            SELECT r.request_id,
                   CASE WHEN e.encoding IN ('o200k_base', 'cl100k_base') THEN e.encoding
                        ELSE '{DEFAULT_ENCODING}' END AS encoding,
                   coalesce(e.encoding, 'approx') IN ('o200k_base', 'cl100k_base') AS exact
            FROM requests r LEFT JOIN _enc e USING (model_key)
            WHERE r.token_source IS NULL"""
    )
    if _scalar(con, "SELECT count(*) FROM _need") == 0:
        return fill
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _need_texts AS
           SELECT DISTINCT m.text_hash, n.encoding FROM messages m JOIN _need n USING (request_id)
           UNION
           SELECT DISTINCT r.response_hash, n.encoding
           FROM requests r JOIN _need n USING (request_id)
           WHERE r.response_hash IS NOT NULL"""
    )
    available = {}
    for (encoding,) in con.execute("SELECT DISTINCT encoding FROM _need").fetchall():
        available[encoding] = _count_missing(con, encoding)
    lost = [enc for enc, ok in available.items() if not ok]
    if lost:
        # No tokenizer: estimate from length, calibrated against rows that have logged usage.
        fill.calibration = _calibration(con)
        con.execute(
            """INSERT OR IGNORE INTO text_tokens
               SELECT t.text_hash, n.encoding, round(strlen(t.text) / ? * ?)::BIGINT
               FROM texts t JOIN _need_texts n USING (text_hash)
               WHERE n.encoding IN (SELECT unnest(?::VARCHAR[]))""",
            [BYTES_PER_TOKEN, fill.calibration or 1.0, lost],
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _filled AS
            WITH inp AS (
              SELECT n.request_id,
                     coalesce(sum(k.tokens + {TOKENS_PER_MESSAGE}), 0) + {TOKENS_PER_REPLY} AS inp,
                     n.exact AND NOT list_contains(?::VARCHAR[], n.encoding) AS exact
              FROM _need n LEFT JOIN messages m USING (request_id)
              LEFT JOIN text_tokens k ON k.text_hash = m.text_hash AND k.encoding = n.encoding
              GROUP BY n.request_id, n.exact, n.encoding
            ), outp AS (
              SELECT n.request_id, k.tokens AS outp
              FROM _need n JOIN requests r USING (request_id)
              JOIN text_tokens k ON k.text_hash = r.response_hash AND k.encoding = n.encoding
            )
            SELECT i.*, coalesce(o.outp, 0) AS outp FROM inp i LEFT JOIN outp o USING (request_id)
            """,
        [lost],
    )
    con.execute(
        """UPDATE requests r SET
             input_tokens = f.inp, cache_read_tokens = 0, cache_write_tokens = 0,
             cache_write_1h_tokens = 0,
             output_tokens = f.outp,
             token_source = CASE WHEN f.exact THEN 'tokenized' ELSE 'estimated' END
           FROM _filled f WHERE f.request_id = r.request_id"""
    )
    fill.tokenized = _scalar(con, "SELECT count(*) FROM _filled WHERE exact")
    fill.estimated = _scalar(con, "SELECT count(*) FROM _filled WHERE NOT exact")
    for table in ("_enc", "_need", "_need_texts", "_filled"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return fill


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(scalar(con, sql) or 0)


def _calibration(con: duckdb.DuckDBPyConnection) -> float | None:
    """logged prompt tokens / length-estimated prompt tokens over rows that have both."""
    row = first_row(
        con,
        f"""WITH sizes AS (SELECT text_hash, strlen(text) AS bytes FROM texts),
            est AS (
              SELECT r.request_id, any_value(r.input_tokens) AS logged,
                     sum(s.bytes / {BYTES_PER_TOKEN} + {TOKENS_PER_MESSAGE})
                       + {TOKENS_PER_REPLY} AS estimate
              FROM requests r JOIN messages m USING (request_id) JOIN sizes s USING (text_hash)
              WHERE r.token_source = 'logged' GROUP BY r.request_id
            )
            SELECT sum(logged) / sum(estimate), count(*) FROM est""",
    )
    if row is None or row[0] is None or row[1] < 20:
        return None
    return min(max(float(row[0]), 0.25), 4.0)
