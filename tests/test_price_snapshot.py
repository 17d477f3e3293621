"""The bundled community price snapshot: regenerated from ../shared it equals the committed file,
it prices what the curated table does not (and never ahead of it), and its prices bill exactly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import anthropic_line, openai_line, require_shared, write_jsonl

from advisor.price_import import import_litellm
from advisor.price_snapshot import SNAPSHOT_PATH, snapshot_command, write_snapshot
from advisor.pricing import load_prices, request_cost

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
LITELLM = (
    ROOT.parent / "shared" / "data" / "prices" / "litellm_model_prices_and_context_window.json"
)
CURATED, COMMUNITY = "curated", "community snapshot of 2026-12-04"

# The twenty most used models of the year, as logged (name, provider), and who prices them.
TWENTY = [
    ("gpt-4o", "openai", CURATED),
    ("gpt-4o-mini", "openai", CURATED),
    ("gpt-4.1", "openai", CURATED),
    ("gpt-4.1-mini", "openai", CURATED),
    ("gpt-5", "openai", CURATED),
    ("gpt-5-mini", "openai", CURATED),
    ("o3", "openai", CURATED),
    ("o4-mini", "openai", CURATED),
    ("o3-mini", "openai", COMMUNITY),
    ("claude-sonnet-4-5-20250929", "anthropic", CURATED),
    ("claude-3-5-haiku-20241022", "anthropic", CURATED),
    ("claude-3-7-sonnet-20250219", "anthropic", COMMUNITY),
    ("gemini-2.5-pro", "openai", CURATED),  # Gemini through its OpenAI-compatible endpoint
    ("gemini-2.5-flash", "openai", CURATED),
    ("gemini-2.5-flash-lite", "openai", CURATED),
    ("gemini-2.0-flash", "openai", COMMUNITY),
    ("deepseek-chat", "deepseek", COMMUNITY),
    ("deepseek-reasoner", "deepseek", COMMUNITY),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together_ai", COMMUNITY),
    ("mistral-large-latest", "mistral", COMMUNITY),
]


def test_committed_snapshot_is_what_the_import_makes(tmp_path: Path) -> None:
    committed = RULES / SNAPSHOT_PATH
    header = json.loads(committed.read_text(encoding="utf-8"))
    source = require_shared(LITELLM, "LiteLLM's price table")
    retrieved = dt.date.fromisoformat(header["retrieved"])
    imported = import_litellm(source, retrieved)
    assert imported.entries == header["source_entries"] == 4878  # sample_spec included
    out = tmp_path / "litellm.json"
    write_snapshot(
        imported.models, out, source=header["source"], version=header["version"],
        retrieved=retrieved, command=snapshot_command(source.name, header["version"], retrieved),
        entries=imported.entries,
    )  # fmt: skip
    assert out.read_bytes() == committed.read_bytes(), f"regenerate: {header['command']}"


def test_a_curated_name_never_reaches_the_snapshot() -> None:
    table = load_prices(RULES)
    for name in ("gpt-4o", "azure/gpt-4o", "claude-3-5-haiku", "vertex_ai/claude-3-5-haiku"):
        hit = table.resolve(name)
        assert hit is not None and table.origin[hit.key].startswith("prices/"), name
    # the snapshot's own entry for Vertex's claude-3-5-haiku (1/5 per 1M) is not used
    assert table.models["claude-3-5-haiku"].prices.input == Decimal("0.80")


def test_a_prices_file_overrides_the_snapshot(tmp_path: Path) -> None:
    from test_prices_import import prices_yaml

    override = prices_yaml(
        tmp_path / "o.yaml",
        [{"id": "o3-mini", "provider": "openai", "prices": {"input": "1", "output": "2"}}],
    )
    table = load_prices(RULES, [override])
    hit = table.resolve("o3-mini")
    assert hit is not None and table.origin[hit.key] == "o.yaml"
    assert table.models[hit.key].prices.output == Decimal("2")


def test_community_only_model_with_cached_tokens_costs_what_hand_arithmetic_says() -> None:
    """deepseek-chat (snapshot): 0.28 input, 0.028 cache hit, 0.42 output, USD per 1M tokens.
    10,000 input of which 8,000 read from cache, 1,000 output:
    2,000 x 0.28 + 8,000 x 0.028 + 1,000 x 0.42 = 560 + 224 + 420 = 1,204 per 1M = $0.001204."""
    table = load_prices(RULES)
    hit = table.resolve("deepseek-chat", "deepseek")
    assert hit is not None and table.origin[hit.key] == str(SNAPSHOT_PATH)
    model = table.models[hit.key]
    cost = request_cost(model, input_tokens=10_000, cache_read_tokens=8_000, output_tokens=1_000)
    assert cost == Decimal("0.001204")


def test_the_twenty_most_used_models_are_all_priced_each_by_its_source(tmp_path: Path) -> None:
    from advisor import api

    rows = []
    for i, (model, provider, _) in enumerate(TWENTY):
        if provider == "anthropic":
            rows.append(anthropic_line(f"r{i}", model=model))
        else:
            rows.append(openai_line(f"r{i}", model=model, provider=provider))
    rows.append(openai_line("cached", model="deepseek-chat", provider="deepseek", prompt=10_000,
                            completion=1_000, cached=8_000))  # fmt: skip
    log = write_jsonl(tmp_path / "twenty.jsonl", rows)
    result = api.analyze([str(log)], out_dir=tmp_path / "out", write_report=False)
    analysis = result.analysis
    assert analysis.coverage.unpriced_requests == 0
    assert analysis.coverage.priced_requests == len(TWENTY) + 1
    assert analysis.prices is not None
    by_source = {s.name: s.requests for s in analysis.prices.sources}
    community = sum(1 for *_, src in TWENTY if src == COMMUNITY) + 1
    assert by_source[str(SNAPSHOT_PATH)] == community
    assert sum(by_source.values()) == len(TWENTY) + 1
    assert f"requests priced by curated {len(TWENTY) + 1 - community}, {COMMUNITY} {community}" in (
        analysis.coverage.notes
    )
    table = load_prices(RULES)
    for model, provider, source in TWENTY:
        hit = table.resolve(model, provider)
        assert hit is not None, model
        got = table.origin[hit.key]
        assert (got == str(SNAPSHOT_PATH)) == (source == COMMUNITY), (model, got)


@pytest.mark.parametrize("name", ["o3-mini-2025-01-31", "azure/o3-mini"])
def test_snapshot_variants_climb_their_base_ladder(name: str) -> None:
    from advisor.levers.tiering import load_tiers

    table = load_prices(RULES)
    hit = table.resolve(name, "azure" if name.startswith("azure") else None)
    assert hit is not None and table.models[hit.key].base == "o3-mini"
    assert load_tiers(RULES, table).ranks[hit.key] == ("TIER-O", 1)


def test_each_owner_example_resolves_to_its_entry() -> None:
    """rules/prices/community/owners.yaml: a plain name, no provider, means the maker's entry."""
    from advisor.price_snapshot import OWNERS_PATH, Owners
    from advisor.ruleset import load_model

    table = load_prices(RULES)
    owners = load_model(RULES / OWNERS_PATH, Owners).owners
    assert owners
    for owner in owners:
        assert owner.examples, owner.id
        for name, key in owner.examples.items():
            hit = table.resolve(name)
            assert hit is not None and hit.key == key, (owner.id, name, hit)
            assert table.models[key].provider in owner.providers, (owner.id, name)


@pytest.mark.parametrize(
    ("name", "provider", "host", "prices"),
    [
        # file order put Azure's copy first (8/24); Mistral's own price is 0.5/1.5
        ("mistral-large-latest", None, "mistral", ("0.5", "1.5")),
        ("mistral-large-latest", "openai", "mistral", ("0.5", "1.5")),  # no such host: the owner
        ("mistral-large-latest", "azure", "azure", ("8", "24")),  # the logged host wins
        ("mistral-large-latest", "azure_ai", "azure_ai", ("2", "6")),
        ("azure/mistral-large-latest", None, "azure", ("8", "24")),  # ... as does a prefix
        ("mistral/mistral-large-latest", "azure", "mistral", ("0.5", "1.5")),
        # no Anthropic entry (retired): Bedrock's at list price, not Snowflake's (no write price)
        ("claude-3-7-sonnet", None, "bedrock_converse", ("3", "15")),
        ("claude-3-7-sonnet-20250219", "anthropic", "bedrock_converse", ("3", "15")),
        ("claude-3-7-sonnet", "snowflake", "snowflake", ("3", "15")),
    ],
)
def test_a_plain_name_resolves_to_the_logged_host_else_the_maker(
    name: str, provider: str | None, host: str, prices: tuple[str, str]
) -> None:
    table = load_prices(RULES)
    hit = table.resolve(name, provider)
    assert hit is not None and table.origin[hit.key] == str(SNAPSHOT_PATH)
    model = table.models[hit.key]
    assert model.provider == host
    assert (model.prices.input, model.prices.output) == tuple(map(Decimal, prices))
    if host == "bedrock_converse":  # Anthropic's cache-write surcharge is listed
        assert model.prices.cache_write_5m == Decimal("3.75")


def test_the_owner_choice_never_depends_on_file_order(tmp_path: Path) -> None:
    """The same snapshot with its entries reversed resolves every owner example alike."""
    from advisor.price_snapshot import OWNERS_PATH

    rules = tmp_path / "rules"
    (rules / SNAPSHOT_PATH).parent.mkdir(parents=True)
    doc = json.loads((RULES / SNAPSHOT_PATH).read_text(encoding="utf-8"))
    doc["models"].reverse()
    (rules / SNAPSHOT_PATH).write_text(json.dumps(doc), encoding="utf-8")
    (rules / OWNERS_PATH).write_bytes((RULES / OWNERS_PATH).read_bytes())
    names = ["mistral-large-latest", "claude-3-7-sonnet", "claude-3-7-sonnet-20250219"]
    forward, backward = load_prices(RULES), load_prices(rules)
    for name in names:
        a, b = forward.resolve(name), backward.resolve(name)
        assert a is not None and b is not None and a.key == b.key, name
