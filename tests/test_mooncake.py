"""Validation against real prefix reuse: the Mooncake traces (../shared/data/README.md).

Each trace line names the 512-token blocks of a prompt by id, with prefix semantics (equal ids mean
equal content up to and including that block). We turn every block id into a deterministic
512-word text whose words are single o200k_base tokens, write the requests as advisor JSONL, ingest
them, and run the caching lever with an unbounded TTL, no minimum and 512-token increments. The
share of input tokens (and of blocks) it finds served from an earlier prefix must match the
README's infinite-cache figures within 1 %.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from helpers import run_standalone

from advisor import store, tokens
from advisor.ingest import ingest
from advisor.levers.base import STATE_COLUMNS, LeverContext, SimOptions
from advisor.levers.caching import CachingLever
from advisor.pricing import PriceTable, load_prices
from advisor.ruleset import default_rules_dir

BLOCK = 512
REFERENCE = {  # share of input tokens, share of blocks (../shared/data/README.md)
    "synthetic": (0.6512, 0.6396),
    "conversation": (0.3736, 0.3664),
}
START = datetime(2026, 1, 1, tzinfo=UTC)


@cache
def vocabulary() -> tuple[str, ...]:
    """Short words that are one o200k_base token each, with their leading space."""
    enc = tokens.get_encoding("o200k_base")
    assert enc is not None
    word = re.compile(rb"^ [a-z]{2,4}$")
    found = []
    for i in range(enc.n_vocab):
        try:
            raw = enc.decode_single_token_bytes(i)
        except KeyError:
            continue
        if word.match(raw):
            found.append(raw.decode())
    return tuple(sorted(found))


def block_text(block_id: int, length: int = BLOCK) -> str:
    """The block's text: BLOCK words drawn by a generator seeded with the block id; a shorter
    last block is the start of the full one."""
    words = vocabulary()
    picks = np.random.default_rng(block_id).integers(0, len(words), BLOCK)[:length]
    return "".join(words[i] for i in picks)


def write_trace(trace: Path, out: Path) -> int:
    """The trace as advisor JSONL (one user message per request); returns the number of lines."""
    n = 0
    with trace.open() as src, out.open("w") as dst:
        for n, line in enumerate(src, 1):
            row = json.loads(line)
            ids, total = row["hash_ids"], row["input_length"]
            last = total - BLOCK * (len(ids) - 1)
            text = "".join(block_text(b) for b in ids[:-1]) + block_text(ids[-1], last)
            ts = START + timedelta(milliseconds=row["timestamp"])
            usage = {"prompt_tokens": total, "completion_tokens": row["output_length"]}
            envelope = {
                "id": f"mc-{n:06d}",
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
                "provider": "openai",
                "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
                "response": {"id": f"mc-{n:06d}", "usage": usage},
            }
            dst.write(json.dumps(envelope) + "\n")
    return n


def infinite_cache_prices() -> PriceTable:
    """The price table with OpenAI's caching made ideal: no minimum, 512-token increments."""
    prices = load_prices(default_rules_dir())
    provider = prices.providers["openai"]
    assert provider.caching is not None
    ideal = provider.caching.model_copy(
        update={"min_tokens": 0, "increment": BLOCK, "extended_ttl": None}
    )
    prices.providers["openai"] = provider.model_copy(update={"caching": ideal})
    return prices


def reference_figures(trace: Path) -> tuple[float, float]:
    """The README's definition recomputed from the ids: blocks served from an earlier prefix."""
    rows = [json.loads(line) for line in trace.open()]
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["timestamp"], i))
    seen: set[int] = set()
    hit_tokens = total_tokens = hit_blocks = total_blocks = 0
    for i in order:
        ids, n = rows[i]["hash_ids"], rows[i]["input_length"]
        k = 0
        while k < len(ids) and ids[k] in seen:
            k += 1
        hit_blocks += k
        hit_tokens += BLOCK * k if k < len(ids) else n
        total_tokens += n
        total_blocks += len(ids)
        seen.update(ids)
    return hit_tokens / total_tokens, hit_blocks / total_blocks


def test_vocabulary_words_are_single_tokens(needs_tiktoken: None) -> None:
    enc = tokens.get_encoding("o200k_base")
    assert enc is not None
    text = block_text(7) + block_text(8, 100)
    assert len(enc.encode_ordinary(text)) == BLOCK + 100
    assert block_text(7, 100) == block_text(7)[: len(block_text(7, 100))]


@pytest.mark.parametrize("name", ["synthetic", "conversation"])
def test_infinite_cache_reproduces_mooncake(
    name: str, shared_data: Path, tmp_path: Path, needs_tiktoken: None
) -> None:
    trace = shared_data / "real" / f"mooncake_{name}_trace.jsonl"
    ref_tokens, ref_blocks = REFERENCE[name]
    assert reference_figures(trace) == pytest.approx((ref_tokens, ref_blocks), abs=1e-4)

    path = tmp_path / f"{name}.jsonl"
    lines = write_trace(trace, path)
    con = store.connect()
    ingest(con, [str(path)])
    con.execute("UPDATE requests SET model_key = 'gpt-4o'")
    assert con.execute("SELECT count(*) FROM requests").fetchone() == (lines,)
    con.execute(f"CREATE TEMP TABLE state_base AS SELECT {', '.join(STATE_COLUMNS)} FROM requests")
    ctx = LeverContext(
        con, infinite_cache_prices(), default_rules_dir(), SimOptions(cache_ttl_seconds=10**9)
    )
    outcome = run_standalone(CachingLever(), ctx, "state_base", "state_caching")

    got = con.execute(
        f"""SELECT sum(p.cache_read_tokens_sim) / sum(s.input_tokens),
                   sum(p.cache_read_tokens_sim // {BLOCK}), count(*)
            FROM {outcome.per_request} p JOIN state_base s USING (request_id)"""
    ).fetchone()
    assert got is not None
    token_share, hit_blocks, requests = got
    total_blocks = sum(len(json.loads(line)["hash_ids"]) for line in trace.open())
    block_share = hit_blocks / total_blocks
    print(
        f"mooncake {name}: tokens {token_share:.4f} (ref {ref_tokens}), "
        f"blocks {block_share:.4f} (ref {ref_blocks})"
    )
    assert requests == lines
    assert token_share == pytest.approx(ref_tokens, rel=0.01)
    assert block_share == pytest.approx(ref_blocks, rel=0.01)
    # the lever's own summary says the same, and the state never reads more than the input
    assert outcome.details["simulated"]["cache_read_share"] == pytest.approx(token_share)
    over = con.execute(
        "SELECT count(*) FROM state_caching WHERE cache_read_tokens > input_tokens"
    ).fetchone()
    assert over == (0,)
    print(
        f"\n{name}: tokens {token_share:.4f} (ref {ref_tokens}), "
        f"blocks {block_share:.4f} (ref {ref_blocks}), {outcome.details['tokenization']}"
    )
