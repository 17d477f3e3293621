"""`advisor prices import`: LiteLLM's price file -> a `kind: prices` file that loads, overrides."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml
from helpers import SHARED, require_shared

from advisor.pricing import (
    ModelPrice,
    PriceTable,
    Resolution,
    import_litellm,
    load_prices,
    rates,
    register_prices,
    write_prices_yaml,
)

LITELLM = SHARED / "data/prices/litellm_model_prices_and_context_window.json"
RULES = Path(__file__).resolve().parents[1] / "rules"
TODAY = dt.date(2026, 11, 26)
needs_litellm = pytest.mark.usefixtures("litellm_file")


@pytest.fixture
def litellm_file() -> Path:
    return require_shared(LITELLM, "LiteLLM's price table")


@pytest.fixture(scope="module")
def imported() -> dict[str, ModelPrice]:
    require_shared(LITELLM, "LiteLLM's price table")
    return {m.id: m for m in import_litellm(LITELLM, retrieved=TODAY)}


def write_json(path: Path, data: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(data))
    return path


@needs_litellm
def test_real_file_imports_thousands_of_chat_models(imported: dict[str, ModelPrice]) -> None:
    assert 2000 < len(imported) < 10000
    assert "sample_spec" not in imported
    assert all(m.retrieved == TODAY for m in imported.values())
    assert imported["gpt-4o"].source == f"litellm {LITELLM.name}"


@needs_litellm
def test_known_prices(imported: dict[str, ModelPrice]) -> None:
    gpt4o = imported["gpt-4o"].prices
    assert (gpt4o.input, gpt4o.cached_input, gpt4o.output) == (
        Decimal("2.5"),
        Decimal("1.25"),
        Decimal("10"),
    )
    assert (gpt4o.batch_input, gpt4o.priority_cached_input) == (Decimal("1.25"), Decimal("2.125"))
    sonnet = imported["claude-sonnet-4-5"].prices
    assert sonnet.cache_write_5m == Decimal("3.75") and sonnet.cache_write_1h == Decimal("6")
    assert imported["gpt-4.1-mini"].prices.input == Decimal("0.4")  # no float noise
    pro = imported["gemini-2.5-pro"].prices.long_context
    assert pro is not None and (pro.threshold_tokens, pro.input, pro.output) == (
        200_000,
        Decimal("2.5"),
        Decimal("15"),
    )
    assert imported["gpt-4o"].encoding == "o200k_base"
    assert imported["gpt-4-turbo"].encoding == "cl100k_base"


@needs_litellm
def test_every_imported_price_is_exact_and_small(imported: dict[str, ModelPrice]) -> None:
    for model in imported.values():
        for name, value in model.prices.model_dump(exclude_none=True).items():
            if isinstance(value, Decimal):
                assert -value.as_tuple().exponent <= 12, (model.id, name, value)  # type: ignore[operator]


@needs_litellm
def test_clean_ids_only_without_a_clash(imported: dict[str, ModelPrice]) -> None:
    # gemini/gemini-2.5-flash clashes with the Vertex entry named gemini-2.5-flash: keeps its name
    assert imported["gemini/gemini-2.5-flash"].provider == "gemini"
    assert imported["gemini-2.5-flash"].provider == "vertex_ai-language-models"
    ids = [m.id.lower() for m in imported.values()]
    assert len(ids) == len(set(ids))


def test_mapping_on_a_small_file(tmp_path: Path) -> None:
    data = {
        "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "chat"},
        "acme/widget-1": {
            "litellm_provider": "acme",
            "mode": "chat",
            "input_cost_per_token": 2.0000000000000002e-07,  # float noise
            "output_cost_per_token": 8e-07,
            "cache_read_input_token_cost": 5e-08,
            "cache_creation_input_token_cost": 2.5e-07,
            "cache_creation_input_token_cost_above_1hr": 4e-07,
            "input_cost_per_token_batches": 1e-07,
            "output_cost_per_token_batches": 4e-07,
            "input_cost_per_token_priority": 3.5e-07,  # no priority output: tier dropped
            "input_cost_per_token_above_128k_tokens": 4e-07,
            "output_cost_per_token_above_128k_tokens": 1.6e-06,
        },
        "acme/widget-2": {"litellm_provider": "acme", "mode": "chat",
                          "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
        "widget-2": {"litellm_provider": "other", "mode": "chat",
                     "input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06},
        "embed-1": {"litellm_provider": "acme", "mode": "embedding", "input_cost_per_token": 1e-07},
        "no-output": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 1e-07},
    }  # fmt: skip
    models = {m.id: m for m in import_litellm(write_json(tmp_path / "l.json", data), TODAY)}
    assert set(models) == {"widget-1", "acme/widget-2", "widget-2"}
    w1 = models["widget-1"]
    assert w1.aliases == ("acme/widget-1",) and w1.provider == "acme"
    p = w1.prices
    assert (p.input, p.output, p.cached_input) == (Decimal("0.2"), Decimal("0.8"), Decimal("0.05"))
    assert (p.cache_write_5m, p.cache_write_1h) == (Decimal("0.25"), Decimal("0.4"))
    assert (p.batch_input, p.batch_output) == (Decimal("0.1"), Decimal("0.4"))
    assert p.priority_input is None
    assert p.long_context is not None and p.long_context.threshold_tokens == 128_000
    assert models["widget-2"].provider == "other"  # the unprefixed entry keeps the clean id


def test_round_trip_write_load_same_prices(tmp_path: Path) -> None:
    models = [
        ModelPrice.model_validate(
            {
                "id": name,
                "title": name,
                "provider": "x",
                "encoding": "approx",
                "source": "test",
                "retrieved": TODAY,
                "prices": {"input": "1.5", "output": "10", "cached_input": "0.000001"},
            }
        )
        for name in ("yes", "null", "1.0", "a: b", "#hash", "{braces}", "ünïcode", "- dash")
    ]
    out = tmp_path / "p.yaml"
    write_prices_yaml(models, out)
    text = out.read_text()
    assert "input: '1.5'" in text and "&id" not in text
    loaded = load_prices(tmp_path / "no-rules", [out])
    assert {m.id: m.prices for m in loaded.models.values()} == {m.id: m.prices for m in models}


@needs_litellm
def test_real_round_trip_and_sql(imported: dict[str, ModelPrice], tmp_path: Path) -> None:
    out = tmp_path / "litellm.yaml"
    write_prices_yaml(list(imported.values()), out)
    assert yaml.safe_load(out.read_text())["kind"] == "prices"
    loaded = load_prices(tmp_path / "no-rules", [out])
    assert len(loaded.models) == len(imported)
    for key, model in imported.items():
        assert loaded.models[key].prices == model.prices, key
    con = duckdb.connect()
    register_prices(con, loaded)  # every imported price fits the exact per-token columns
    row = con.execute(
        "SELECT input_default, cache_write_1h_default FROM prices"
        " WHERE model_key = 'claude-sonnet-4-5'"
    ).fetchone()
    assert row == (Decimal("0.000003"), Decimal("0.000006"))


def override_file(tmp_path: Path, models: list[ModelPrice]) -> Path:
    out = tmp_path / "override.yaml"
    write_prices_yaml(models, out)
    return out


@needs_litellm
def test_imported_file_overrides_builtin_entries(
    imported: dict[str, ModelPrice], tmp_path: Path
) -> None:
    cheaper = imported["gpt-4o"].model_copy(
        update={"prices": imported["gpt-4o"].prices.model_copy(update={"input": Decimal("2.25")})}
    )
    table = load_prices(
        RULES, [override_file(tmp_path, [cheaper, imported["gemini/gemini-2.5-pro"]])]
    )
    gpt4o = table.models["gpt-4o"]
    assert gpt4o.prices.input == Decimal("2.25") and gpt4o.source.startswith("litellm")
    # the built-in aliases and metadata survive the override
    assert table.resolve("gpt-4o-2024-11-20") == Resolution("gpt-4o", "alias")
    assert gpt4o.family == "gpt-4o" and gpt4o.encoding == "o200k_base"
    # an imported provider-prefixed id is matched exactly before any prefix stripping
    assert table.resolve("gemini/gemini-2.5-pro") == Resolution("gemini/gemini-2.5-pro", "exact")
    assert table.resolve("gemini-2.5-pro", provider="gemini") == Resolution(
        "gemini/gemini-2.5-pro", "exact"
    )
    # built-in caching rules still apply to the overridden model
    rules = table.caching_for("gpt-4o")
    assert rules is not None and rules.min_tokens == 1024


def test_later_file_overrides_earlier(tmp_path: Path) -> None:
    def entry(price: str) -> ModelPrice:
        return ModelPrice.model_validate(
            {"id": "m", "title": "M", "provider": "x", "encoding": "approx", "source": "s",
             "retrieved": TODAY, "prices": {"input": price, "output": price}}
        )  # fmt: skip

    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    write_prices_yaml([entry("1")], first)
    write_prices_yaml([entry("2")], second)
    table: PriceTable = load_prices(tmp_path / "none", [first, second])
    assert rates(table.models["m"]).input == Decimal("2")


@needs_litellm
def test_builtin_prices_agree_with_litellm() -> None:
    """Every effective built-in rate that LiteLLM also lists agrees with it (disagreements are
    documented in the YAML comments and listed here)."""
    raw = json.loads(LITELLM.read_text())
    known_disagreements = {("gemini-2.5-pro", "default", True, "cache_write_5m")}
    fields = {
        "input": "input_cost_per_token",
        "output": "output_cost_per_token",
        "cached_input": "cache_read_input_token_cost",
        "cache_write_5m": "cache_creation_input_token_cost",
        "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    }
    tiers = {"default": "", "batch": "_batches", "flex": "_flex", "priority": "_priority"}
    checked = 0
    for model in load_prices(RULES).models.values():
        names = [model.id, *model.aliases, f"gemini/{model.id}"]
        names += [f"anthropic.{n}-v1:0" for n in (model.id, *model.aliases)]
        entry = next((raw[n] for n in names if n in raw), None)
        assert entry is not None, model.id
        for tier, suffix in tiers.items():
            for long in (False, True) if model.prices.long_context else (False,):
                ours = rates(model, tier, long)
                for kind, field in fields.items():
                    theirs = entry.get(field + ("_above_200k_tokens" if long else "") + suffix)
                    if theirs is None or (model.id, tier, long, kind) in known_disagreements:
                        continue
                    expected = (Decimal(repr(theirs)) * 10**6).quantize(Decimal("1e-12"))
                    assert getattr(ours, kind) == expected, (model.id, tier, long, kind)
                    checked += 1
    assert checked > 150
