"""Price table: rules data, model-name resolution, and the exact cost formula (scalar == SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.errors import RuleError
from advisor.pricing import (
    COST_TYPE,
    TIERS,
    PriceTable,
    Resolution,
    cost_sql,
    load_prices,
    rates,
    register_prices,
    request_cost,
)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_prices(Path(__file__).resolve().parents[1] / "rules")


def usd(text: str) -> Decimal:
    return Decimal(text)


# --- the rules data ---------------------------------------------------------------------------

REQUIRED = {
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini",
    "gpt-5-nano", "o3", "o4-mini", "gpt-3.5-turbo", "gpt-4-turbo", "claude-opus-4-1",
    "claude-opus-4", "claude-opus-4-5", "claude-sonnet-4", "claude-sonnet-4-5", "claude-haiku-4-5",
    "claude-3-5-haiku", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
}  # fmt: skip


def test_required_models_are_priced(table: PriceTable) -> None:
    assert set(table.models) >= REQUIRED


def test_every_model_has_provenance_and_encoding(table: PriceTable) -> None:
    for model in table.models.values():
        assert model.source.startswith("https://"), model.id
        assert model.retrieved is not None and model.effective_from is not None, model.id
        assert model.encoding in {"o200k_base", "cl100k_base", "approx"}, model.id
        assert model.title and model.family and model.provider, model.id


def test_encodings_match_the_tokenizer_generation(table: PriceTable) -> None:
    assert table.models["gpt-4o"].encoding == "o200k_base"
    assert table.models["gpt-5-nano"].encoding == "o200k_base"
    assert table.models["gpt-4-turbo"].encoding == "cl100k_base"
    assert table.models["gpt-3.5-turbo"].encoding == "cl100k_base"
    assert table.models["claude-sonnet-4-5"].encoding == "approx"


def test_every_provider_states_caching_and_batch_rules(table: PriceTable) -> None:
    assert set(table.providers) == {"openai", "anthropic", "google"}
    for provider in table.providers.values():
        assert provider.caching is not None and provider.batch is not None
        assert provider.caching.id.startswith("CACHE-") and provider.batch.id.startswith("BATCH-")
        assert provider.caching.source.startswith("https://")
    openai = table.providers["openai"].caching
    anthropic = table.providers["anthropic"].caching
    assert openai is not None and anthropic is not None
    assert (openai.mode, openai.min_tokens, openai.increment) == ("automatic", 1024, 128)
    assert (anthropic.mode, anthropic.max_breakpoints, anthropic.write_surcharge) == (
        "explicit",
        4,
        True,
    )


def test_batch_prices_follow_the_provider_discount(table: PriceTable) -> None:
    for model in table.models.values():
        provider = table.providers[model.provider or ""]
        assert provider.batch is not None and provider.batch.discount is not None
        p = model.prices
        assert p.batch_input == p.input * provider.batch.discount, model.id
        assert p.batch_output == p.output * provider.batch.discount, model.id


def test_batch_cached_reads_follow_the_provider_stacking_rule(table: PriceTable) -> None:
    for model in table.models.values():
        batch = table.providers[model.provider or ""].batch
        p = model.prices
        if p.batch_input is None or p.cached_input is None or batch is None:
            continue
        assert batch.discount is not None
        expected = p.cached_input * batch.discount if batch.stacks_with_cache else p.cached_input
        assert rates(model, "batch").cached_input == expected, model.id


def test_unstacked_batch_cache_is_provider_data_not_a_per_model_listing(tmp_path: Path) -> None:
    # Google's batch discount does not stack with cached input: without the per-model
    # batch_cached_input the standard cached price still applies in batch (and flex)
    rules = Path(__file__).resolve().parents[1] / "rules" / "prices" / "google.yaml"
    text = "".join(
        line for line in rules.read_text().splitlines(keepends=True) if "batch_cached" not in line
    )
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "google.yaml").write_text(text)
    pro = load_prices(tmp_path).models["gemini-2.5-pro"]
    assert rates(pro, "batch").cached_input == usd("0.125")
    assert rates(pro, "flex").cached_input == usd("0.125")
    stacked = text.replace("stacks_with_cache: false", "stacks_with_cache: true")
    (tmp_path / "prices" / "google.yaml").write_text(stacked)
    assert rates(load_prices(tmp_path).models["gemini-2.5-pro"], "batch").cached_input == usd(
        "0.0625"
    )


def test_anthropic_cache_multipliers(table: PriceTable) -> None:
    for model in table.models.values():
        if model.provider != "anthropic":
            continue
        p = model.prices
        assert p.cache_write_5m == p.input * usd("1.25"), model.id
        assert p.cache_write_1h == p.input * 2, model.id
        assert p.cached_input == p.input * usd("0.1"), model.id


def test_per_model_cache_minimums(table: PriceTable) -> None:
    def minimum(key: str) -> int | None:
        rules = table.caching_for(key)
        return None if rules is None else rules.min_tokens

    assert minimum("claude-sonnet-4-5") == 1024
    assert minimum("claude-opus-4-1") == 1024
    assert minimum("claude-3-5-haiku") == 2048
    assert minimum("claude-haiku-4-5") == 4096
    assert minimum("claude-opus-4-5") == 4096
    assert minimum("gpt-4o") == 1024
    assert minimum("gpt-4-turbo") is None  # no cached price: cannot cache
    assert minimum("gpt-4o-2024-05-13") is None


def test_yaml_float_price_is_rejected_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schema_version: 1\nkind: prices\nprovider: openai\ncurrency: USD\n"
        "source: https://example.com\nretrieved: 2026-01-01\nmodels:\n"
        "  - id: m\n    title: M\n    encoding: approx\n    source: x\n    retrieved: 2026-01-01\n"
        "    prices: {input: 2.5, output: '10'}\n"
    )
    with pytest.raises(RuleError) as err:
        load_prices(tmp_path)
    message = str(err.value)
    assert "bad.yaml" in message and "models.0.prices.input" in message and "quoted" in message


@pytest.mark.parametrize("value", ["3", "'abc'", "'-1'", "'0.0000000000001'"])
def test_other_bad_prices_are_rejected(tmp_path: Path, value: str) -> None:
    (tmp_path / "p.yaml").write_text(
        "schema_version: 1\nkind: prices\nprovider: x\ncurrency: USD\nsource: s\n"
        "retrieved: 2026-01-01\nmodels:\n  - id: m\n    title: M\n    encoding: approx\n"
        f"    source: s\n    retrieved: 2026-01-01\n    prices: {{input: {value}, output: '1'}}\n"
    )
    with pytest.raises(RuleError, match=r"prices\.input"):
        load_prices(tmp_path)


def test_duplicate_names_in_one_file_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "schema_version: 1\nkind: prices\nprovider: x\ncurrency: USD\nsource: s\n"
        "retrieved: 2026-01-01\nmodels:\n"
        + "".join(
            f"  - id: {i}\n    title: T\n    encoding: approx\n    source: s\n"
            f"    retrieved: 2026-01-01\n    aliases: [shared]\n"
            f"    prices: {{input: '1', output: '1'}}\n"
            for i in ("a", "b")
        )
    )
    with pytest.raises(RuleError, match="shared"):
        load_prices(tmp_path)


# --- resolution -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        ("gpt-4o", Resolution("gpt-4o", "exact")),
        ("GPT-4o", Resolution("gpt-4o", "exact")),
        ("gpt-4o-2024-08-06", Resolution("gpt-4o", "alias")),
        ("gpt-4o-2024-11-20", Resolution("gpt-4o", "alias")),
        ("gpt-4o-2025-12-01", Resolution("gpt-4o", "alias")),  # unlisted snapshot: generic rule
        ("gpt-4o-2024-05-13", Resolution("gpt-4o-2024-05-13", "exact")),  # priced differently
        ("gpt-4o-mini", Resolution("gpt-4o-mini", "exact")),
        ("gpt-4o-mini-2024-07-18", Resolution("gpt-4o-mini", "alias")),
        ("gpt-5-nano-2025-08-07", Resolution("gpt-5-nano", "alias")),
        ("claude-sonnet-4-5-20250929", Resolution("claude-sonnet-4-5", "alias")),
        ("claude-sonnet-4-5@20250929", Resolution("claude-sonnet-4-5", "alias")),
        ("claude-3-5-haiku-latest", Resolution("claude-3-5-haiku", "alias")),
        ("claude-opus-4-1-20250805", Resolution("claude-opus-4-1", "alias")),
        ("openai/gpt-4.1-mini", Resolution("gpt-4.1-mini", "prefix")),
        ("azure/gpt-4o-2024-08-06", Resolution("gpt-4o", "prefix")),
        ("gemini/gemini-2.5-flash", Resolution("gemini-2.5-flash", "prefix")),
        ("models/gemini-2.5-pro", Resolution("gemini-2.5-pro", "prefix")),
        ("vertex_ai/claude-sonnet-4-5@20250929", Resolution("claude-sonnet-4-5", "prefix")),
        ("anthropic/claude-haiku-4-5", Resolution("claude-haiku-4-5", "prefix")),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", Resolution("claude-sonnet-4-5", "prefix")),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", Resolution("claude-3-5-haiku", "prefix")),
        ("bedrock/eu.anthropic.claude-opus-4-1-20250805-v1:0",
         Resolution("claude-opus-4-1", "prefix")),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
            Resolution("claude-haiku-4-5", "prefix"),
        ),
    ],
)  # fmt: skip
def test_resolve(table: PriceTable, logged: str, expected: Resolution) -> None:
    assert table.resolve(logged) == expected


@pytest.mark.parametrize(
    "logged",
    [
        "gpt-4o-mini-foo",  # never a guess at gpt-4o or gpt-4o-mini
        "ft:gpt-4o-mini:org::abc123",  # fine-tuned prices differ
        "ft:gpt-4o-2024-08-06:acme:custom:xyz",
        "gpt-4o-mini-2024-07-18.ft-0123abcd",  # Azure fine-tune
        "chatgpt-4o-latest",
        "gemini-2.5-flash-preview-05-20",
        "gpt-3.5-turbo-1106",  # an older snapshot at other prices
        "llama-3-70b",
        "",
    ],
)
def test_unknown_models_resolve_to_none(table: PriceTable, logged: str) -> None:
    curated = load_prices(Path(__file__).resolve().parents[1] / "rules")
    curated.community = None  # the curated rules alone: never a guess at a neighbour
    assert curated.resolve(logged) is None
    hit = table.resolve(logged)  # the community snapshot prices a name only as itself
    assert hit is None or (hit.how == "exact" and hit.key.lower() == logged.lower())


def test_gpt_4o_mini_is_not_gpt_4o(table: PriceTable) -> None:
    mini = table.resolve("gpt-4o-mini-2024-07-18")
    assert mini is not None and mini.key == "gpt-4o-mini"
    assert table.models["gpt-4o-mini"].prices.input != table.models["gpt-4o"].prices.input


def test_azure_deployment_names(table: PriceTable) -> None:
    deployments = {"prod-chat": "gpt-4o-mini", "legacy": "gpt-4o-2024-08-06", "odd": "no-such"}
    assert table.resolve("prod-chat", "azure", deployments) == Resolution(
        "gpt-4o-mini", "deployment"
    )
    assert table.resolve("legacy", "azure", deployments) == Resolution("gpt-4o", "deployment")
    assert table.resolve("odd", "azure", deployments) is None
    assert table.resolve("prod-chat", "azure") is None  # without the map: unknown, not guessed


def test_resolve_many_dedupes_pairs(table: PriceTable) -> None:
    pairs = [("gpt-4o", "openai"), ("gpt-4o", "openai"), ("mystery", None), ("p", "azure")]
    out = table.resolve_many(pairs, deployments={"p": "o3"})
    assert out == {
        ("gpt-4o", "openai"): Resolution("gpt-4o", "exact"),
        ("mystery", None): None,
        ("p", "azure"): Resolution("o3", "deployment"),
    }


# --- hand-computed costs ----------------------------------------------------------------------


def test_openai_cached_tokens_are_inside_prompt_tokens(table: PriceTable) -> None:
    # 1,000 prompt tokens of which 600 cached, 200 output: 400 x 2.50 + 600 x 1.25 + 200 x 10
    cost = request_cost(
        table.models["gpt-4o"], input_tokens=1000, cache_read_tokens=600, output_tokens=200
    )
    assert cost == usd("0.00375")


def test_anthropic_convention_normalised(table: PriceTable) -> None:
    # Logged input_tokens=100, cache_read=3,000, cache_creation=500 -> canonical input 3,600.
    sonnet = table.models["claude-sonnet-4-5"]
    kwargs: dict[str, Any] = {
        "input_tokens": 3600,
        "cache_read_tokens": 3000,
        "cache_write_tokens": 500,
    }
    # 100 x 3 + 3,000 x 0.30 + 500 x 3.75 + 400 x 15 = 9,075 per 1M
    assert request_cost(sonnet, **kwargs, output_tokens=400) == usd("0.009075")
    # all 500 written with the 1 h TTL: 500 x 6 instead of 500 x 3.75
    one_hour = request_cost(sonnet, **kwargs, cache_write_1h_tokens=500, output_tokens=400)
    assert one_hour == usd("0.0102")
    # 200 of the 500 at 1 h: 300 x 3.75 + 200 x 6
    mixed = request_cost(sonnet, **kwargs, cache_write_1h_tokens=200, output_tokens=400)
    assert mixed == usd("0.009525")


def test_reasoning_tokens_are_billed_as_output(table: PriceTable) -> None:
    # o3: 500 visible + 4,500 reasoning = 5,000 output tokens; 2,000 x 2 + 5,000 x 8
    cost = request_cost(table.models["o3"], input_tokens=2000, output_tokens=500 + 4500)
    assert cost == usd("0.044")


def test_batch_tier(table: PriceTable) -> None:
    gpt4o = table.models["gpt-4o"]
    batch = request_cost(
        gpt4o, input_tokens=1000, cache_read_tokens=600, output_tokens=200, service_tier="batch"
    )
    assert batch == usd("0.001875")  # 400 x 1.25 + 600 x 0.625 + 200 x 5
    # Anthropic: the batch discount stacks with cache reads and writes (half of 0.009075)
    sonnet = request_cost(
        table.models["claude-sonnet-4-5"],
        input_tokens=3600,
        cache_read_tokens=3000,
        cache_write_tokens=500,
        output_tokens=400,
        service_tier="batch",
    )
    assert sonnet == usd("0.0045375")
    # Gemini: cached input is not discounted again in batch
    flash = request_cost(
        table.models["gemini-2.5-flash"],
        input_tokens=1000,
        cache_read_tokens=600,
        output_tokens=200,
        service_tier="batch",
    )
    assert flash == usd("0.000328")  # 400 x 0.15 + 600 x 0.03 + 200 x 1.25


def test_flex_tier(table: PriceTable) -> None:
    tokens: dict[str, Any] = {"input_tokens": 1000, "cache_read_tokens": 600, "output_tokens": 200}
    # o3 lists flex prices: 400 x 1 + 600 x 0.25 + 200 x 4
    assert request_cost(table.models["o3"], **tokens, service_tier="flex") == usd("0.00135")
    # gpt-5 flex is billed at batch rates: 400 x 0.625 + 600 x 0.0625 + 200 x 5
    assert request_cost(table.models["gpt-5"], **tokens, service_tier="flex") == usd("0.0012875")


def test_priority_tier(table: PriceTable) -> None:
    tokens: dict[str, Any] = {"input_tokens": 1000, "cache_read_tokens": 600, "output_tokens": 200}
    # 400 x 4.25 + 600 x 2.125 + 200 x 17
    assert request_cost(table.models["gpt-4o"], **tokens, service_tier="priority") == usd(
        "0.006375"
    )
    # no priority prices listed: standard prices
    haiku = table.models["claude-haiku-4-5"]
    assert request_cost(haiku, **tokens, service_tier="priority") == request_cost(haiku, **tokens)


def test_unknown_tier_is_standard(table: PriceTable) -> None:
    gpt5 = table.models["gpt-5"]
    assert request_cost(gpt5, input_tokens=10, output_tokens=10, service_tier="auto") == (
        request_cost(gpt5, input_tokens=10, output_tokens=10, service_tier=None)
    )


def test_long_context_threshold(table: PriceTable) -> None:
    pro = table.models["gemini-2.5-pro"]
    # exactly at the threshold: standard prices (200,000 x 1.25 + 1,000 x 10)
    assert request_cost(pro, input_tokens=200_000, output_tokens=1000) == usd("0.26")
    # one token over: the whole request at long-context prices (200,001 x 2.5 + 1,000 x 15)
    assert request_cost(pro, input_tokens=200_001, output_tokens=1000) == usd("0.5150025")
    # batch over the threshold: long-context prices halved
    batch = request_cost(pro, input_tokens=200_001, output_tokens=1000, service_tier="batch")
    assert batch == usd("0.25750125")
    # Sonnet 4.5 over 200K, cache reads and writes included in the count:
    # 40,000 x 6 + 200,000 x 0.60 + 10,000 x 7.50 + 2,000 x 22.50
    sonnet = request_cost(
        table.models["claude-sonnet-4-5"],
        input_tokens=250_000,
        cache_read_tokens=200_000,
        cache_write_tokens=10_000,
        output_tokens=2000,
    )
    assert sonnet == usd("0.48")


def test_fallbacks_without_cache_prices(table: PriceTable) -> None:
    turbo = table.models["gpt-4-turbo"]  # no cached price: a "cached" token costs full input
    assert request_cost(turbo, input_tokens=1000, cache_read_tokens=1000, output_tokens=0) == (
        request_cost(turbo, input_tokens=1000, output_tokens=0)
    )
    r = rates(table.models["gpt-4o"])  # OpenAI writes carry no surcharge
    assert r.cache_write_5m == r.cache_write_1h == r.input


def test_inconsistent_counts_are_refused(table: PriceTable) -> None:
    model = table.models["gpt-4o"]
    with pytest.raises(ValueError):
        request_cost(model, input_tokens=10, cache_read_tokens=11, output_tokens=0)
    with pytest.raises(ValueError):
        request_cost(
            model, input_tokens=10, cache_write_tokens=2, cache_write_1h_tokens=3, output_tokens=0
        )
    with pytest.raises(ValueError):
        request_cost(model, input_tokens=-1, output_tokens=0)


# --- SQL == scalar ----------------------------------------------------------------------------

COLUMNS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens"]


@st.composite
def token_counts(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    big = st.integers(0, 10**12)
    threshold = st.sampled_from([199_999, 200_000, 200_001])  # the long-context boundary
    input_tokens = draw(st.one_of(st.integers(0, 400_000), threshold, big))
    reads = draw(st.integers(0, input_tokens))
    writes = draw(st.integers(0, input_tokens - reads))
    writes_1h = draw(st.integers(0, writes))
    output = draw(st.one_of(st.integers(0, 200_000), big))
    return input_tokens, reads, writes, writes_1h, output


Row = tuple[str | None, int | None, int | None, int | None, int | None, int | None, str | None]


def sql_costs(table: PriceTable, rows: Sequence[Row]) -> list[Decimal | None]:
    """Cost rows through DuckDB: (model_key, input, reads, writes, 1 h writes, output, tier)."""
    con = duckdb.connect()
    register_prices(con, table)
    requests = pa.table(
        {
            "i": pa.array(range(len(rows)), pa.int64()),
            "model_key": pa.array([r[0] for r in rows], pa.string()),
            **{c: pa.array([r[k + 1] for r in rows], pa.int64()) for k, c in enumerate(COLUMNS)},
            "output_tokens": pa.array([r[5] for r in rows], pa.int64()),
            "service_tier": pa.array([r[6] for r in rows], pa.string()),
        }
    )
    con.register("requests", requests)
    query = (
        f"SELECT {cost_sql('r', 'p')} FROM requests r"
        " LEFT JOIN prices p USING (model_key) ORDER BY r.i"
    )
    return [row[0] for row in con.execute(query).fetchall()]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(token_counts(), min_size=1, max_size=6))
def test_sql_cost_equals_scalar_cost_for_every_model(
    table: PriceTable, counts: list[tuple[int, int, int, int, int]]
) -> None:
    rows = [
        (key, *c, tier)
        for key in sorted(table.models)
        for c in counts
        for tier in (*TIERS, None, "auto")
    ]
    for row, got in zip(rows, sql_costs(table, rows), strict=True):
        key, i, cr, cw, cw1, out, tier = row
        expected = request_cost(
            table.models[key],
            input_tokens=i,
            cache_read_tokens=cr,
            cache_write_tokens=cw,
            cache_write_1h_tokens=cw1,
            output_tokens=out,
            service_tier=tier,
        )
        assert got == expected, row


def test_sql_cost_type_is_exact_decimal(table: PriceTable) -> None:
    con = duckdb.connect()
    register_prices(con, table)
    con.execute(
        "CREATE TABLE r AS SELECT 'gpt-4o-mini' AS model_key, 1 AS input_tokens, "
        "NULL::BIGINT AS cache_read_tokens, NULL::BIGINT AS cache_write_tokens, "
        "NULL::BIGINT AS cache_write_1h_tokens, 0 AS output_tokens, 'default' AS service_tier"
    )
    kind, value = con.execute(
        f"SELECT typeof({cost_sql()}), {cost_sql()} FROM r LEFT JOIN prices p USING (model_key)"
    ).fetchone()  # type: ignore[misc]
    assert kind == COST_TYPE
    assert value == usd("0.00000015")  # one gpt-4o-mini input token, 0.15 per 1M, held exactly
    per_token = con.execute(
        "SELECT cached_input_default FROM prices WHERE model_key = 'gpt-4o-mini'"
    ).fetchone()
    assert per_token is not None and per_token[0] == usd("0.000000075")


def test_sql_null_cache_columns_count_as_zero(table: PriceTable) -> None:
    got = sql_costs(table, [("gpt-4o", 1000, None, None, None, 200, None)])
    assert got == [request_cost(table.models["gpt-4o"], input_tokens=1000, output_tokens=200)]


def test_unpriced_rows_cost_null_not_zero(table: PriceTable) -> None:
    rows: list[Row] = [
        ("no-such-model", 1000, 0, 0, 0, 200, "default"),
        (None, 1000, 0, 0, 0, 200, "default"),
        ("gpt-4o", None, 0, 0, 0, 200, "default"),  # unknown input count: unknown cost
        ("gpt-4o", 1000, 0, 0, 0, None, "default"),
    ]
    assert sql_costs(table, rows) == [None, None, None, None]


# --- implausible prices are refused, naming file, model and field (issue 10) -------------------


def _bad_prices_file(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "bad-prices.yaml"
    path.write_text(
        "schema_version: 1\nkind: prices\ncurrency: USD\nsource: test\nretrieved: 2026-11-26\n"
        "models:\n"
        "  - {id: ok-model, title: OK, provider: x, encoding: approx, source: s,"
        " retrieved: 2026-11-26, prices: {input: '1', output: '2'}}\n"
        "  - {id: acme-big, title: Big, provider: x, encoding: approx, source: s,"
        f" retrieved: 2026-11-26, prices: {{input: '1', output: {value}}}}}\n"
    )
    return path


@pytest.mark.parametrize(
    "value", ["'1e25'", "1e25", "'-1'", "'NaN'", ".nan", "'Infinity'", ".inf", "'cheap'", "'10001'"]
)
def test_implausible_prices_name_the_file_model_and_field(tmp_path: Path, value: str) -> None:
    path = _bad_prices_file(tmp_path, value)
    with pytest.raises(RuleError) as caught:
        load_prices(tmp_path / "no-rules", [path])
    message = str(caught.value)
    assert "bad-prices.yaml" in message and "acme-big" in message
    assert "prices.output" in message


def test_the_price_ceiling_admits_every_listed_price(table: PriceTable) -> None:
    from advisor.pricing import MAX_PRICE

    assert Decimal(600) * 15 < MAX_PRICE  # o1-pro's output, the dearest listed text price
    assert all(rates(m).output < MAX_PRICE for m in table.models.values())


def test_analyze_with_an_implausible_price_exits_1_not_70(tmp_path: Path) -> None:
    import subprocess
    import sys

    from helpers import openai_line, write_jsonl

    log = write_jsonl(tmp_path / "a.jsonl", [openai_line("a")])
    done = subprocess.run(
        [sys.executable, "-m", "advisor", "analyze", str(log), "-o", str(tmp_path / "o"),
         "--prices", str(_bad_prices_file(tmp_path, "'1e25'"))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "acme-big" in done.stderr and "ceiling" in done.stderr


# --- the table's identity -----------------------------------------------------------------------


def test_the_digest_is_the_prices_not_the_paperwork(tmp_path: Path) -> None:
    def table_with(price: str, retrieved: str) -> PriceTable:
        path = tmp_path / f"p{price}{retrieved}.yaml"
        path.write_text(
            "schema_version: 1\nkind: prices\ncurrency: USD\nsource: test\n"
            f"retrieved: {retrieved}\nmodels:\n"
            "  - {id: m, title: M, provider: x, encoding: approx, source: s,"
            f" retrieved: {retrieved}, prices: {{input: '{price}', output: '2'}}}}\n"
        )
        return load_prices(tmp_path / "no-rules", [path])

    a, b, c = (
        table_with("1", "2026-11-26"),
        table_with("1", "2026-12-01"),
        table_with("1.5", "2026-11-26"),
    )
    assert a.digest() == b.digest() != c.digest()
    assert a.model_digest("m") != c.model_digest("m")
    assert [(s.name, s.kind, s.retrieved.isoformat()) for s in b.sources] == [
        ("p12026-12-01.yaml", "file", "2026-12-01")
    ]


def test_curated_sources_are_named_relative_to_the_rules_dir(table: PriceTable) -> None:
    assert [(s.name, s.kind) for s in table.sources] == [
        ("prices/anthropic.yaml", "rules"), ("prices/google.yaml", "rules"),
        ("prices/openai.yaml", "rules"), ("prices/community/litellm.json", "community"),
    ]  # fmt: skip
    assert all(s.models > 0 for s in table.sources)
    assert len(table.digest()) == 64
