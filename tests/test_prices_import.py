"""`advisor prices import`: LiteLLM's price file -> a `kind: prices` file that loads, overrides."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from helpers import SHARED, require_shared

from advisor.price_import import import_litellm, write_prices_yaml
from advisor.pricing import ModelPrice, PriceTable, Resolution, load_prices, rates, register_prices
from advisor.ruleset import read_yaml

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
    return {m.id: m for m in import_litellm(LITELLM, retrieved=TODAY).models}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args], capture_output=True, text=True, timeout=300
    )


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
        "inf": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": float("inf"),
                "output_cost_per_token": float("nan")},
        "huge": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 1e19,
                 "output_cost_per_token": 1e-06},
    }  # fmt: skip
    models = {m.id: m for m in import_litellm(write_json(tmp_path / "l.json", data), TODAY).models}
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
    assert read_yaml(out)["kind"] == "prices"
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
def test_builtin_prices_agree_with_litellm(litellm_file: Path) -> None:
    """Every effective built-in rate that LiteLLM also lists agrees with it (disagreements are
    documented in the YAML comments and listed here)."""
    raw = json.loads(litellm_file.read_text())
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


# --- an imported table on top of the curated one (issue 10) -----------------------------------


def prices_yaml(path: Path, models: list[dict[str, object]]) -> Path:
    """A `kind: prices` file written by hand (as `advisor prices import` writes them)."""
    common = {"encoding": "approx", "source": "litellm test.json", "retrieved": "2026-11-26"}
    document = {
        "schema_version": 1,
        "kind": "prices",
        "currency": "USD",
        "source": "litellm test.json",
        "retrieved": "2026-11-26",
        "models": [{"title": m["id"], **common, **m} for m in models],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


GPT4O = {"input": "2.5", "output": "10", "cached_input": "1.25", "batch_input": "1.25",
         "batch_output": "5", "priority_input": "4.25", "priority_output": "17",
         "priority_cached_input": "2.125"}  # fmt: skip


def test_a_resellers_entry_never_prices_the_providers_model(tmp_path: Path) -> None:
    """gmi/openai/gpt-4o (a reseller, no cache price) became the id `openai/gpt-4o`, which then
    priced every `openai` + `gpt-4o` request: cached reads at the full input price."""
    data = {
        "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                   "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
        "gmi/openai/gpt-4o": {"litellm_provider": "gmi", "mode": "chat",
                              "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
    }  # fmt: skip
    out = tmp_path / "imported.yaml"
    run_cli("prices", "import", str(write_json(tmp_path / "l.json", data)), "-o", str(out))
    table = load_prices(RULES, [out])
    assert table.resolve("gpt-4o", provider="openai") == Resolution("gpt-4o", "exact")
    assert table.resolve("gmi/openai/gpt-4o", provider="gmi") == Resolution(
        "gmi/openai/gpt-4o", "exact"
    )
    # the class: a `provider/model` id is that provider's entry only, however the file spells it
    hand = prices_yaml(
        tmp_path / "hand.yaml",
        [{"id": "openai/gpt-4o", "provider": "gmi", "prices": {"input": "9", "output": "9"}}],
    )
    assert load_prices(RULES, [hand]).resolve("gpt-4o", provider="openai") == Resolution(
        "gpt-4o", "exact"
    )


def test_snapshots_and_host_copies_keep_the_ladder_and_caching(tmp_path: Path) -> None:
    from advisor.levers.tiering import load_tiers

    out = prices_yaml(
        tmp_path / "imported.yaml",
        [
            {"id": "gpt-4o", "provider": "openai", "prices": GPT4O},
            {"id": "gpt-4o-2024-08-06", "provider": "openai", "prices": GPT4O},  # same prices
            {"id": "azure/gpt-4o", "provider": "azure",  # Azure lists no priority tier
             "prices": {k: v for k, v in GPT4O.items() if not k.startswith("priority")}},
            {"id": "claude-sonnet-4-5-20250929", "provider": "anthropic",
             "prices": {"input": "3", "output": "15", "cached_input": "0.3",
                        "cache_write_5m": "3.75", "cache_write_1h": "6"}},
        ],
    )  # fmt: skip
    table = load_prices(RULES, [out])
    # same prices as the model the curated table knows: one more name of it
    assert table.resolve("gpt-4o-2024-08-06", "openai") == Resolution("gpt-4o", "alias")
    assert "gpt-4o-2024-08-06" not in table.models
    # other prices: its own key, a variant sharing the ladder and the provider's caching rules
    azure = table.models["azure/gpt-4o"]
    assert azure.base == "gpt-4o" and azure.family == "gpt-4o" and azure.encoding == "o200k_base"
    assert table.resolve("azure/gpt-4o", "azure") == Resolution("azure/gpt-4o", "exact")
    rules = table.caching_for("azure/gpt-4o")
    assert rules is not None and rules.id == "CACHE-OPENAI" and rules.min_tokens == 1024
    sonnet = table.models["claude-sonnet-4-5-20250929"]
    assert sonnet.base == "claude-sonnet-4-5"
    assert (table.caching_for("claude-sonnet-4-5-20250929") or rules).id == "CACHE-ANTHROPIC"
    tiers = load_tiers(RULES, table)
    assert tiers.targets["azure/gpt-4o"]["easy"] == "gpt-4o-mini"
    assert tiers.targets["claude-sonnet-4-5-20250929"]["easy"] == "claude-haiku-4-5"
    assert tiers.ranks["azure/gpt-4o"] == tiers.ranks["gpt-4o"]


def test_an_extended_ttl_list_covers_the_variants_of_its_models(tmp_path: Path) -> None:
    out = prices_yaml(
        tmp_path / "imported.yaml",
        [{"id": "azure/gpt-5", "provider": "azure",
          "prices": {"input": "1.25", "output": "10", "cached_input": "0.125"}}],
    )  # fmt: skip
    rules = load_prices(RULES, [out]).caching_for("azure/gpt-5")
    assert rules is not None and rules.extended_ttl is not None
    assert rules.extended_ttl.models is not None and "azure/gpt-5" in rules.extended_ttl.models


def test_the_imported_table_prices_the_sample_as_the_curated_one(
    litellm_file: Path, tmp_path: Path, analysed_sample: Any
) -> None:
    """`advisor prices import` + `--prices` on sample_logs once moved the spend $97.84 -> $111.39
    and the tiering saving $13.79 -> $0.00. Now the spend differs from the curated run's only where
    the two tables' prices differ, computed here request by request."""
    from advisor import api, store
    from advisor.pricing import request_cost

    sample = str(Path(__file__).resolve().parents[1] / "sample_logs" / "traffic.jsonl.gz")
    imported = tmp_path / "imported.yaml"
    done = run_cli("prices", "import", str(litellm_file), "-o", str(imported))
    assert done.returncode == 0, done.stderr
    runs = {  # the curated run is the session's (conftest.py)
        "curated": analysed_sample,
        "imported": api.analyze(
            [sample], out_dir=tmp_path / "imported", prices_files=[imported], write_report=False
        ),
    }
    curated, mine = (runs[n].analysis for n in ("curated", "imported"))
    tables = {"curated": load_prices(RULES), "imported": load_prices(RULES, [imported])}
    costs: dict[str, dict[str, Decimal]] = {}
    for name, run in runs.items():
        con = store.connect(run.files["db"], read_only=True)
        rows = con.execute(
            """SELECT request_id, model_key, input_tokens, coalesce(cache_read_tokens, 0),
                      coalesce(cache_write_tokens, 0), coalesce(cache_write_1h_tokens, 0),
                      output_tokens, service_tier
               FROM requests WHERE model_key IS NOT NULL"""
        ).fetchall()
        con.close()
        costs[name] = {
            rid: request_cost(
                tables[name].models[key], input_tokens=i, cache_read_tokens=cr,
                cache_write_tokens=cw, cache_write_1h_tokens=cw1, output_tokens=o,
                service_tier=tier,
            )
            for rid, key, i, cr, cw, cw1, o, tier in rows
        }  # fmt: skip
    assert costs["curated"].keys() == costs["imported"].keys()  # the same requests are priced
    # where the two tables' prices differ for the sample's models: LiteLLM lists no long-context
    # price for Sonnet 4.5 and no cache-storage price for Gemini 2.5 Flash (and flex prices at
    # its batch rates); no request of the sample is above 200K tokens or on flex on those models
    assert curated.prices is not None and mine.prices is not None
    differing = [k for k, d in curated.prices.models.items() if mine.prices.models.get(k) != d]
    assert differing == ["claude-sonnet-4-5", "gemini-2.5-flash"]
    differ = sum(costs["imported"][r] - costs["curated"][r] for r in costs["curated"])
    # LiteLLM's copy agrees with every curated price the sample uses (see
    # test_builtin_prices_agree_with_litellm): the difference is exactly nothing
    assert differ == 0
    assert mine.baseline.cost - curated.baseline.cost == differ
    assert mine.baseline.cost == Decimal("100.85706576")
    levers = {lever.id: lever.standalone_saving for lever in mine.levers}
    assert levers["tiering"] == {lv.id: lv.standalone_saving for lv in curated.levers}["tiering"]
    assert levers["tiering"] > 0
    assert mine.coverage.priced_requests == curated.coverage.priced_requests


def _analyze(tmp_path: Path, name: str, log: Path, *prices: Path):  # type: ignore[no-untyped-def]
    from advisor import api

    out = tmp_path / name
    return api.analyze([str(log)], out_dir=out, prices_files=prices, write_report=False)


def test_coverage_says_which_requests_need_a_price_the_table_lacks(tmp_path: Path) -> None:
    """A table without a cache-read price billed logged cache reads at the full input price
    without a word. Choice: bill them so (as a provider without a cached rate would) and say in
    coverage how many requests that touches; likewise a tier without prices."""
    from helpers import openai_line, write_jsonl

    log = write_jsonl(
        tmp_path / "a.jsonl",
        [
            openai_line("a", prompt=2000, cached=1024),
            openai_line("b", prompt=2000, cached=1536),
            openai_line("c", service_tier="flex"),
            openai_line("d"),
        ],
    )
    bare = prices_yaml(
        tmp_path / "bare.yaml",
        [{"id": "gpt-4o", "provider": "openai", "prices": {"input": "2.5", "output": "10"}}],
    )
    notes = _analyze(tmp_path, "o", log, bare).analysis.coverage.notes
    assert notes == [
        "2 requests logged cache reads with no cache-read price: billed at the input price"
        " (gpt-4o)",
        "1 requests ran as flex with no flex or batch price: billed at standard prices (gpt-4o)",
    ]
    curated = _analyze(tmp_path, "c", log).analysis.coverage.notes  # the curated gpt-4o has both
    assert not [n for n in curated if "billed at" in n]


def test_analysis_records_the_price_table_and_diff_names_a_price_change(tmp_path: Path) -> None:
    from helpers import openai_line, write_jsonl

    log = write_jsonl(tmp_path / "a.jsonl", [openai_line("a", prompt=1000, completion=10)])
    dearer = prices_yaml(
        tmp_path / "dearer.yaml",
        [{"id": "gpt-4o", "provider": "openai", "prices": {**GPT4O, "input": "3"}}],
    )
    old = _analyze(tmp_path, "old", log)
    new = _analyze(tmp_path, "new", log, dearer)
    recorded = json.loads(new.files["analysis"].read_text())["prices"]
    assert [(s["name"], s["kind"]) for s in recorded["sources"]][-1] == ("dearer.yaml", "file")
    files = [s for s in recorded["sources"] if s["kind"] != "community"]
    assert {s["retrieved"] for s in files} == {"2026-11-26"}
    assert [s["requests"] for s in recorded["sources"]] == [0, 0, 0, 0, 1]  # dearer.yaml's gpt-4o
    assert recorded["digest"] == load_prices(RULES, [dearer]).digest()
    assert list(recorded["models"]) == ["gpt-4o"]
    assert old.analysis.prices is not None and old.analysis.prices.digest != recorded["digest"]

    args = ("diff", str(old.files["analysis"]), str(new.files["analysis"]))
    shown = json.loads(run_cli(*args, "--json").stdout)
    assert shown["prices_changed"] is True and shown["prices"]["models"] == ["gpt-4o"]
    assert shown["prices"]["new_sources"][-1] == "dearer.yaml"
    table = " ".join(run_cli(*args).stdout.split())
    assert "the price table changed" in table and "prices differ for gpt-4o" in table
    same = json.loads(run_cli("diff", *[str(old.files["analysis"])] * 2, "--json").stdout)
    assert same["prices_changed"] is False and same["notes"] == []


def test_prices_import_says_loudly_what_is_missing(tmp_path: Path) -> None:
    data = {
        "acme/full": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 1e-06,
                      "output_cost_per_token": 2e-06, "cache_read_input_token_cost": 1e-07,
                      "input_cost_per_token_batches": 5e-07,
                      "output_cost_per_token_batches": 1e-06, "prompt_cache_min_tokens": 4096},
        "acme/bare": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 1e-06,
                      "output_cost_per_token": 2e-06},
        "deep/seek": {"litellm_provider": "deep", "mode": "chat", "input_cost_per_token": 1e-06,
                      "output_cost_per_token": 2e-06, "input_cost_per_token_cache_hit": 1e-07},
        "acme/thinker": {"litellm_provider": "acme", "mode": "chat",
                         "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                         "cache_read_input_token_cost": 1e-07,
                         "output_cost_per_reasoning_token": 8e-06,  # no slot: reasoning is output
                         "input_cost_per_token_above_128k_tokens": 2e-06,
                         "output_cost_per_token_above_128k_tokens": 4e-06,
                         "input_cost_per_token_above_512k_tokens": 4e-06,  # a second threshold
                         "output_cost_per_token_above_512k_tokens": 8e-06,
                         "cache_creation_input_token_cost_batches": 3e-07,  # no batch prices
                         "input_cost_per_audio_token": 1e-05},
        "acme/embed": {"litellm_provider": "acme", "mode": "embedding",
                       "input_cost_per_token": 1e-07},
    }  # fmt: skip
    report = import_litellm(write_json(tmp_path / "l.json", data), TODAY)
    models = {m.id: m for m in report.models}
    assert models["seek"].prices.cached_input == Decimal("0.1")  # DeepSeek's cache_hit name
    assert models["thinker"].unmodelled == (
        "cache_creation_input_token_cost_batches",
        "input_cost_per_token_above_512k_tokens",
        "output_cost_per_reasoning_token",
        "output_cost_per_token_above_512k_tokens",
    )
    assert models["full"].unmodelled == () and models["bare"].unmodelled == ()
    assert models["full"].min_cache_tokens == 4096 and models["bare"].min_cache_tokens is None
    assert report.missing["cached_input"] == 1 and report.missing["batch_input"] == 3
    assert report.ignored == {"input_cost_per_audio_token": 1}
    done = run_cli("prices", "import", str(tmp_path / "l.json"), "-o", str(tmp_path / "p.yaml"))
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "imported 4 models" in said
    assert "a cache-read price 1" in said and "batch prices 3" in said
    assert "1 models list prices advisor cannot bill as listed" in said
    assert "output_cost_per_reasoning_token 1" in said
    # and an analysis of traffic on such a model says so
    table = load_prices(tmp_path / "no-rules", [tmp_path / "p.yaml"])
    assert table.models["thinker"].unmodelled == models["thinker"].unmodelled
