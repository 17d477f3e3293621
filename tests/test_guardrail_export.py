"""`advisor export guardrails`: the generic YAML round-trips, the LiteLLM config loads in
litellm.Router and enforces its rpm, every LiteLLM body validates against LiteLLM's own request
models, the Helicone policies parse with Helicone's grammar, names from logs never break out of
YAML, JSON, a comment or a header value, and too-thin limits never get a value."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from helpers import openai_line, write_jsonl

from advisor import store
from advisor.errors import AdvisorError
from advisor.export.guardrails import (
    END_USER_BUDGET_ID,
    HELICONE_POLICY,
    Entities,
    GuardrailSource,
    helicone_policy,
    render_guardrails,
)
from advisor.guardrails.generic import generic_document
from advisor.guardrails.models import Guardrails, Limit, LimitBasis
from advisor.guardrails.store import load_guardrails, save_guardrails

HOSTILE = [
    "<script>alert(1)</script>",
    "x: &anchor\n- x",
    "a;w=1;s=user\r\nX-Evil: 1",
    "'single' \"double\", comma # not a comment",
]
PERIOD = ("2026-10-18T00:00:00Z", "2026-10-25T23:59:00Z")


def make_limit(
    id: str,
    scope: str,
    subject: str,
    metric: str,
    window: str,
    unit: str,
    value: str | None,
    *,
    action: str = "refuse",
    reason: str | None = None,
) -> Limit:
    return Limit.model_validate(
        {
            "id": id,
            "scope": scope,
            "subject": subject,
            "metric": metric,
            "window": window,
            "sliding": window in ("1m", "1h"),
            "unit": unit,
            "value": None if value is None else Decimal(value),
            "action": action,
            "status": "set" if value is not None else "too_thin",
            "reason": reason,
            "basis": LimitBasis(
                statistic="p99.9", quantile=0.999, observed=1.0, headroom=1.5,
                samples=500, subjects=12, days=8.0,
            ),
            "applies_to_requests": 500,
            "refused_requests": 2,
            "refused_share": 0.004,
            "refused_normal_requests": 0,
            "refused_normal_share": 0.0,
            "target_share": 0.001,
            "refused_subjects": 1,
            "prevented_spend": Decimal("3.21"),
            "prevented_anomaly_spend": Decimal("3.21"),
        }
    )  # fmt: skip


THIN = "one day of history: budgets per month need 28 days\n- injected: true"


def default_guardrails(features: list[str] = HOSTILE) -> Guardrails:
    """The shipped policies' shape: per-feature caps, user rates and budgets, account budgets
    (the monthly one too thin), global budget and rates."""
    limits = []
    for feature in features:
        limits.append(
            make_limit("GR-FEATURE-INPUT", "feature", feature, "input_tokens", "request",
                       "tokens", "8000")
        )  # fmt: skip
        limits.append(
            make_limit("GR-FEATURE-MAX-TOKENS", "feature", feature, "max_tokens", "request",
                       "tokens", "1500", action="cap")
        )  # fmt: skip
    limits += [
        make_limit("GR-USER-RPM", "user", "*", "requests", "1m", "requests", "40"),
        make_limit("GR-USER-RPH", "user", "*", "requests", "1h", "requests", "600"),
        make_limit("GR-USER-TOKENS-DAY", "user", "*", "tokens", "1d", "tokens", "2000000"),
        make_limit("GR-USER-SPEND-DAY", "user", "*", "spend", "1d", "USD", "12.5"),
        make_limit("GR-ACCOUNT-SPEND-DAY", "account", "*", "spend", "1d", "USD", "150"),
        make_limit("GR-ACCOUNT-SPEND-MONTH", "account", "*", "spend", "1mo", "USD", None,
                   reason=THIN),
        make_limit("GR-GLOBAL-SPEND-DAY", "global", "all", "spend", "1d", "USD", "900"),
        make_limit("GR-GLOBAL-RPM", "global", "all", "requests", "1m", "requests", "1200"),
        make_limit("GR-GLOBAL-TPM", "global", "all", "tokens", "1m", "tokens", "900000"),
    ]  # fmt: skip
    return Guardrails(limits=limits, notes=["no account ids before 2026-10-20"])


ENTITIES = Entities(
    users=tuple(sorted([*HOSTILE, "u1", " padded "])),
    accounts=tuple(sorted([*HOSTILE, "acme"])),
    models=(("gpt-4o", "openai"), ("gpt-4o-mini", "openai")),
    known=True,
)


def source(guardrails: Guardrails | None = None, entities: Entities = ENTITIES) -> GuardrailSource:
    return GuardrailSource(guardrails or default_guardrails(), *PERIOD, entities)


def _header_is_comments(text: str) -> None:
    """The header is comment lines only (a reason's line break cannot end one), and nothing a
    name or reason holds becomes YAML structure: no key `injected` anywhere in the data."""
    lines = text.splitlines()
    header = [line for line in lines[: next(i for i, x in enumerate(lines) if x[:1] != "#")]]
    assert header and all(line.startswith("# ") and "\r" not in line for line in header)

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | set().union(*(keys(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(keys(v) for v in node))
        return set()

    assert "injected" not in keys(yaml.safe_load(text))


# ---------------------------------------------------------------- generic


def test_generic_round_trips_and_lists_too_thin_limits_without_a_value() -> None:
    guardrails = default_guardrails()
    text = render_guardrails(source(guardrails), "generic")
    assert text.startswith("# ") and "2026-10-18T00:00:00Z" in text.splitlines()[1]
    loaded = yaml.safe_load(text)
    assert loaded == json.loads(json.dumps(generic_document(guardrails, *PERIOD)))
    assert loaded["advisor_guardrails"] == 1
    assert loaded["period"] == {"start": PERIOD[0], "end": PERIOD[1]}
    by_id = {(x["id"], x["subject"]): x for x in loaded["limits"]}
    for feature in HOSTILE:  # every hostile feature name intact, as data
        assert by_id[("GR-FEATURE-INPUT", feature)]["value"] == 8000
        assert by_id[("GR-FEATURE-MAX-TOKENS", feature)]["action"] == "cap"
    spend = by_id[("GR-USER-SPEND-DAY", "*")]
    assert spend["value"] == "12.5" and spend["unit"] == "USD"  # a decimal string
    assert spend["backtest"] == {
        "refused_requests": 2, "refused_share": 0.004, "refused_normal_share": 0.0,
        "refused_subjects": 1, "prevented_spend": "3.21",
    }  # fmt: skip
    assert by_id[("GR-GLOBAL-RPM", "all")]["value"] == 1200  # an int
    assert loaded["not_set"] == [{"id": "GR-ACCOUNT-SPEND-MONTH", "subject": "*", "reason": THIN}]
    assert "GR-ACCOUNT-SPEND-MONTH" not in {x["id"] for x in loaded["limits"]}


def test_a_fractional_count_is_rounded_up_never_down() -> None:
    guardrails = Guardrails(
        limits=[make_limit("GR-USER-RPM", "user", "*", "requests", "1m", "requests", "40.2")]
    )
    assert generic_document(guardrails, None, None)["limits"][0]["value"] == 41


# ---------------------------------------------------------------- LiteLLM


def _litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    import litellm

    return litellm


def test_litellm_config_loads_in_router_and_enforces_the_global_rpm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    litellm = _litellm(monkeypatch)
    text = render_guardrails(source(), "litellm")
    _header_is_comments(text)
    config = yaml.safe_load(text)
    assert set(config) == {"model_list", "router_settings", "litellm_settings"}
    settings = config["litellm_settings"]
    assert settings == {
        "max_budget": 900.0,
        "budget_duration": "1d",
        "max_end_user_budget_id": END_USER_BUDGET_ID,
    }
    for key in settings:  # the proxy sets each litellm_settings key on the litellm module
        assert hasattr(litellm, key), key
    from litellm.proxy.common_utils.timezone_utils import budget_duration_error

    assert budget_duration_error(settings["budget_duration"]) is None
    for deployment in config["model_list"]:
        assert deployment["litellm_params"]["rpm"] == 1200
        assert deployment["litellm_params"]["tpm"] == 900000
    # What does not map is said in a comment, never given an invented key.
    assert "not in LiteLLM: GR-FEATURE-INPUT" in text
    assert "not in LiteLLM: GR-USER-RPH" in text
    assert "not in LiteLLM: GR-USER-TOKENS-DAY: tpd_limit" in text
    assert "not set (too little history): GR-ACCOUNT-SPEND-MONTH" in text
    assert "28 days - injected: true" in text  # the reason's line break, folded in its comment

    # Loaded the way the proxy hands it to the router; a tiny rpm is refused on the third call.
    small = yaml.safe_load(
        render_guardrails(
            source(
                Guardrails(
                    limits=[
                        make_limit("GR-GLOBAL-RPM", "global", "all", "requests", "1m",
                                   "requests", "2")
                    ]
                )
            ),
            "litellm",
        )
    )  # fmt: skip
    router = litellm.Router(model_list=small["model_list"], **small["router_settings"])

    async def three_calls() -> list[str]:
        outcomes = []
        for _ in range(3):
            try:
                await router.acompletion(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="ok"
                )
                outcomes.append("ok")
            except litellm.RateLimitError:
                outcomes.append("refused")
            await asyncio.sleep(0.05)
        return outcomes

    assert asyncio.run(three_calls()) == ["ok", "ok", "refused"]


def _request_models() -> dict[str, Any]:
    from litellm.proxy._types import BudgetNewRequest, NewCustomerRequest, NewTeamRequest
    from litellm.types.proxy.management_endpoints.key_requests import GenerateKeyRequest
    from litellm.types.proxy.management_endpoints.user_requests import NewUserRequest

    return {
        "/budget/new": BudgetNewRequest,
        "/customer/new": NewCustomerRequest,
        "/user/new": NewUserRequest,
        "/team/new": NewTeamRequest,
        "/key/generate": GenerateKeyRequest,
    }


def _validate_bodies(doc: dict[str, Any]) -> None:
    """Each body validates against the endpoint's LiteLLM request model, uses only fields it
    declares (the models allow extras, which the proxy would ignore), and survives unchanged."""
    models = _request_models()
    from litellm.proxy.common_utils.timezone_utils import budget_duration_error

    for request in doc["requests"]:
        model = models[request["path"]]
        windows = [request["body"].get("budget_duration")]
        windows += [w["budget_duration"] for w in request["body"].get("budget_limits", [])]
        for window in filter(None, windows):  # a duration LiteLLM can reset on
            assert budget_duration_error(window) is None, window
        body = request["body"]
        assert set(body) <= set(model.model_fields), (request["path"], set(body))
        parsed = model.model_validate(body)
        for key, value in body.items():
            assert getattr(parsed, key) == value or key == "budget_limits", (key, value)


def test_litellm_bodies_validate_against_litellm_request_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _litellm(monkeypatch)
    text = render_guardrails(source(), "litellm-api")
    doc = json.loads(text)
    _validate_bodies(doc)
    paths = [r["path"] for r in doc["requests"]]
    assert paths[0] == "/budget/new"
    budget = doc["requests"][0]["body"]
    assert budget == {
        "budget_id": END_USER_BUDGET_ID,
        "rpm_limit": 40,
        "max_budget": 12.5,
        "budget_duration": "1d",
    }
    customers = [r["body"]["user_id"] for r in doc["requests"] if r["path"] == "/customer/new"]
    assert customers == sorted([*HOSTILE, "u1"])  # every hostile id intact, sorted
    users = [r["body"]["user_id"] for r in doc["requests"] if r["path"] == "/user/new"]
    assert users == customers
    skipped = {(s["path"], s["id"]) for s in doc["skipped"]}
    assert skipped == {("/customer/new", " padded "), ("/user/new", " padded ")}
    teams = [r["body"] for r in doc["requests"] if r["path"] == "/team/new"]
    assert [t["team_id"] for t in teams] == sorted([*HOSTILE, "acme"])
    assert teams[0]["max_budget"] == 150.0 and teams[0]["budget_duration"] == "1d"
    keys = [r["body"] for r in doc["requests"] if r["path"] == "/key/generate"]
    assert {k["key_alias"] for k in keys if k["team_id"] == "acme"} == {"advisor-acme"}
    for key in keys:  # an id the alias pattern refuses gets a hash; the id stays in metadata
        assert key["metadata"] == {"advisor_account": key["team_id"]}
        assert "\n" not in key["key_alias"] and ";" not in key["key_alias"]
    not_in = [x["id"] for x in doc["not_in_litellm"]]  # a per-feature limit said once
    assert not_in == ["GR-FEATURE-INPUT", "GR-FEATURE-MAX-TOKENS", "GR-USER-RPH",
                      "GR-USER-TOKENS-DAY"]  # fmt: skip
    assert doc["not_set"] == [{"id": "GR-ACCOUNT-SPEND-MONTH", "reason": THIN}]
    assert "1mo" not in text  # the too-thin monthly budget is nowhere given a value


def test_two_account_windows_become_team_budget_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    _litellm(monkeypatch)
    guardrails = Guardrails(
        limits=[
            make_limit("GR-ACCOUNT-SPEND-DAY", "account", "*", "spend", "1d", "USD", "150"),
            make_limit("GR-ACCOUNT-SPEND-MONTH", "account", "*", "spend", "1mo", "USD", "2000"),
            make_limit("GR-USER-SPEND-DAY", "user", "*", "spend", "1d", "USD", "5"),
            make_limit("GR-USER-SPEND-MONTH", "user", "*", "spend", "1mo", "USD", "50"),
        ]
    )
    doc = json.loads(render_guardrails(source(guardrails), "litellm-api"))
    _validate_bodies(doc)
    team = next(r["body"] for r in doc["requests"] if r["path"] == "/team/new")
    assert team["budget_limits"] == [
        {"budget_duration": "1d", "max_budget": 150.0},
        {"budget_duration": "1mo", "max_budget": 2000.0},
    ]
    assert "max_budget" not in team
    # An end user holds one budget window: the first is set, the second is said to be left out.
    assert [x["id"] for x in doc["not_in_litellm"]] == ["GR-USER-SPEND-MONTH"]


def test_per_feature_budgets_map_to_tag_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = _litellm(monkeypatch)
    from litellm.types.utils import BudgetConfig

    guardrails = Guardrails(
        limits=[
            make_limit("GR-FEATURE-SPEND-DAY", "feature", HOSTILE[1], "spend", "1d", "USD", "20"),
            make_limit("GR-FEATURE-SPEND-DAY", "feature", "chat", "spend", "1d", "USD", "7"),
            make_limit("GR-FEATURE-SPEND-MONTH", "feature", "chat", "spend", "1mo", "USD", "90"),
        ]
    )  # fmt: skip
    text = render_guardrails(source(guardrails), "litellm")
    tags = yaml.safe_load(text)["litellm_settings"]["tag_budget_config"]
    assert list(tags) == ["chat", HOSTILE[1]]
    assert BudgetConfig(**tags[HOSTILE[1]]).max_budget == 20.0
    # A tag holds one budget: the monthly one never overwrites the daily one silently.
    assert tags["chat"] == {"max_budget": 7.0, "budget_duration": "1d"}
    assert "not in LiteLLM: GR-FEATURE-SPEND-MONTH: LiteLLM holds one such budget" in text
    assert hasattr(litellm, "tag_budget_config")


def test_from_analysis_json_no_entity_body_is_written() -> None:
    doc = json.loads(render_guardrails(source(entities=Entities()), "litellm-api"))
    assert [r["path"] for r in doc["requests"]] == ["/budget/new"]
    assert any("redacted" in note for note in doc["notes"])
    text = render_guardrails(source(entities=Entities()), "litellm")
    assert "model_list" not in yaml.safe_load(text)
    assert "set on every deployment rpm: 1200, tpm: 900000" in text


# ---------------------------------------------------------------- Helicone


def test_helicone_policies_parse_with_helicones_grammar() -> None:
    text = render_guardrails(source(), "helicone")
    _header_is_comments(text)
    doc = yaml.safe_load(text)
    values = {p["id"]: p["value"] for p in doc["policies"]}
    assert values == {
        "GR-USER-RPM": "40;w=60;s=user",
        "GR-USER-RPH": "600;w=3600;s=user",
        "GR-USER-SPEND-DAY": "1250;w=86400;u=cents;s=user",
        "GR-ACCOUNT-SPEND-DAY": "15000;w=86400;u=cents;s=account",
        "GR-GLOBAL-SPEND-DAY": "90000;w=86400;u=cents",
        "GR-GLOBAL-RPM": "1200;w=60",
    }
    for policy in doc["policies"]:
        assert HELICONE_POLICY.fullmatch(policy["value"])
        assert policy["header"] == "Helicone-RateLimit-Policy"
    sends = {p["id"]: p.get("send_with") for p in doc["policies"]}
    assert sends["GR-USER-RPM"] == "Helicone-User-Id"
    assert sends["GR-ACCOUNT-SPEND-DAY"] == "Helicone-Property-Account"
    assert "rolling" in next(p["note"] for p in doc["policies"] if p["id"] == "GR-USER-SPEND-DAY")
    unmapped = [x["id"] for x in doc["not_in_helicone"]]  # a per-feature limit said once
    assert unmapped == [
        "GR-FEATURE-INPUT", "GR-FEATURE-MAX-TOKENS", "GR-USER-TOKENS-DAY", "GR-GLOBAL-TPM",
    ]  # fmt: skip
    assert doc["not_set"] == [{"id": "GR-ACCOUNT-SPEND-MONTH", "subject": "*", "reason": THIN}]
    # The ids an HTTP header cannot carry unchanged are named (the CR LF one).
    unsendable = sorted(HOSTILE[1:3])
    assert doc["ids_not_sendable_in_a_header"] == {"users": unsendable, "accounts": unsendable}


def test_a_feature_scoped_rate_is_a_property_segment_keyed_by_the_feature() -> None:
    guardrails = Guardrails(
        limits=[make_limit("GR-FEATURE-RPM", "feature", HOSTILE[2], "requests", "1m",
                           "requests", "30")]
    )  # fmt: skip
    doc = yaml.safe_load(render_guardrails(source(guardrails), "helicone"))
    (policy,) = doc["policies"]
    assert policy["value"] == "30;w=60;s=feature"  # the name travels as data, never in the value
    assert policy["only_for_feature"] == HOSTILE[2]


@pytest.mark.parametrize(
    ("quota", "seconds", "segment"),
    [
        (Decimal(1), 60, "user\r\nX-Evil: 1"),
        (Decimal(1), 60, "a;w=1"),
        (Decimal(1), 60, "a,b"),
        (Decimal(1), 60, "acc\u00e9s"),
        (Decimal(1), 30, None),  # under Helicone's 60 s minimum
        (Decimal(1), 31_536_001, None),
        (Decimal(0), 60, None),
    ],
)
def test_helicone_policy_refuses_what_helicones_parser_would_not_read(
    quota: Decimal, seconds: int, segment: str | None
) -> None:
    with pytest.raises(AdvisorError):
        helicone_policy(quota, seconds, "request", segment)


# ---------------------------------------------------------------- the store and the CLI


def test_guardrails_round_trip_through_the_store(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "s.duckdb")
    try:
        assert load_guardrails(con) is None
        guardrails = default_guardrails()
        save_guardrails(con, guardrails)
        assert load_guardrails(con) == guardrails  # unredacted: hostile names intact
        store.set_meta(con, "guardrails", '{"limits": [{"id": 1}]}')
        with pytest.raises(AdvisorError, match="another advisor version"):
            load_guardrails(con)
    finally:
        con.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small analysed store with users and accounts (hostile ones too), its guardrails saved
    by hand as analyze will once the builders are merged."""
    folder = tmp_path_factory.mktemp("guardrails")
    lines = [
        openai_line(f"r{i}", ts=f"2026-10-{18 + i % 5:02d}T12:{i % 60:02d}:00Z",
                    user_id=(["u1", "u2", *HOSTILE])[i % 6], account_id=["acme", HOSTILE[2]][i % 2],
                    feature=HOSTILE[i % 4])
        for i in range(60)
    ]  # fmt: skip
    out = folder / "out"
    result = run("analyze", str(write_jsonl(folder / "t.jsonl", lines)), "-o", str(out))
    assert result.returncode == 0, result.stderr
    con = duckdb.connect(str(out / "advisor.duckdb"))
    try:
        save_guardrails(con, default_guardrails())
    finally:
        con.close()
    return out


def test_cli_exports_every_format_from_the_store(analysed: Path, tmp_path: Path) -> None:
    db = str(analysed / "advisor.duckdb")
    result = run("export", "guardrails", "--db", db, "--format", "litellm-api")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    customers = [r["body"]["user_id"] for r in doc["requests"] if r["path"] == "/customer/new"]
    assert customers == sorted(["u1", "u2", *HOSTILE])  # from the store, unredacted
    teams = [r["body"]["team_id"] for r in doc["requests"] if r["path"] == "/team/new"]
    assert teams == sorted(["acme", HOSTILE[2]])
    assert doc["period"]["start"].startswith("2026-10-18T12:00:00")
    target = tmp_path / "guardrails.yaml"
    result = run("export", "guardrails", "--db", db, "-o", str(target))
    assert result.returncode == 0 and "wrote" in result.stderr, result.stderr
    assert yaml.safe_load(target.read_text(encoding="utf-8"))["advisor_guardrails"] == 1
    for fmt in ("litellm", "helicone"):
        result = run("export", "guardrails", "--db", db, "--format", fmt)
        assert result.returncode == 0 and yaml.safe_load(result.stdout), result.stderr
    config = yaml.safe_load(run("export", "guardrails", "--db", db, "--format", "litellm").stdout)
    assert [m["model_name"] for m in config["model_list"]] == ["gpt-4o"]


def test_analyze_writes_the_guardrail_files_when_the_store_holds_guardrails(
    analysed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    result = run("analyze", "--db", str(analysed / "advisor.duckdb"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    # analyze derives the guardrails afresh: on this tiny store every limit is too thin, and
    # each file still says so rather than being left out
    assert yaml.safe_load((out / "guardrails.yaml").read_text(encoding="utf-8"))["not_set"]
    for name in ("litellm_guardrails.yaml", "helicone_guardrails.yaml"):
        text = (out / name).read_text(encoding="utf-8")
        assert isinstance(loaded := yaml.safe_load(text), dict), name
        assert "not set" in text or loaded.get("not_set"), name
    requests = json.loads((out / "litellm_guardrails_requests.json").read_text(encoding="utf-8"))
    assert requests["advisor_litellm_requests"] == 1


def test_cli_from_analysis_json_says_ids_are_redacted(analysed: Path, tmp_path: Path) -> None:
    from advisor.analysis import load_analysis

    analysis = load_analysis(analysed / "analysis.json").model_copy(
        update={"guardrails": default_guardrails(features=["chat"])}
    )
    path = tmp_path / "analysis.json"
    path.write_text(analysis.to_json(), encoding="utf-8")
    result = run("export", "guardrails", str(path), "--format", "litellm-api")
    assert result.returncode == 0, result.stderr
    assert "redacted" in result.stderr
    assert [r["path"] for r in json.loads(result.stdout)["requests"]] == ["/budget/new"]


def test_cli_errors(tmp_path: Path) -> None:
    result = run("export", "guardrails", "--format", "nope")
    assert result.returncode == 2 and "generic" in result.stderr
    result = run("export", "guardrails", "--db", str(tmp_path / "none.duckdb"))
    assert result.returncode == 1 and "no store" in result.stderr


@pytest.mark.parametrize("fmt", ["generic", "litellm", "litellm-api", "helicone"])
def test_no_limits_renders_an_empty_but_valid_document(fmt: Any) -> None:
    text = render_guardrails(source(Guardrails()), fmt)
    doc = json.loads(text) if fmt == "litellm-api" else yaml.safe_load(text)
    assert doc is not None
    assert not doc.get("limits") and not doc.get("requests") and not doc.get("policies")
