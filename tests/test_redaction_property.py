"""No planted secret survives into any output: secrets of every format the redaction rules know,
generated with variations, are planted into the prompts (user messages and a system prompt) and the
user ids of a small log; `advisor analyze` runs, then `advisor report --format md`, and neither
analysis.json, report.html, report.md, the router configs nor the terminal summary holds any of
them, whole or in part. The evaluation set is exempt: it exists to hold the real prompts."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from helpers import examples, openai_line, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from advisor.cli import app

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "/+"


def _chars(alphabet: str, n: int, m: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=n, max_size=m or n)


def _mixed(alphabet: str, n: int) -> st.SearchStrategy[str]:
    """n characters of `alphabet` holding an upper-case letter, a lower-case letter and a digit
    (a secret of one repeated character could match ordinary output by chance)."""
    return _chars(alphabet, n - 3).map(lambda s: "Qz7" + s)


_name = st.tuples(
    st.sampled_from("BDFGKLMNPRSTVZ"),
    st.lists(st.sampled_from(["ar", "el", "on", "is", "ur", "ath", "ov", "ine", "ex"]), min_size=2),
).map(lambda t: t[0] + "".join(t[1]))  # a made-up name: capitalised, in no dictionary
_password = st.tuples(_chars(string.ascii_letters, 6, 12), _chars(string.digits, 1, 4)).map("".join)
_email = st.tuples(_chars(string.ascii_lowercase, 5, 10), _chars(string.ascii_lowercase, 4, 8)).map(
    lambda t: f"{t[0]}.x@{t[1]}.com"
)
_ssn = st.tuples(
    st.integers(1, 665), st.integers(1, 99), st.integers(1, 9999)
).map(lambda t: f"{t[0]:03d}-{t[1]:02d}-{t[2]:04d}")  # fmt: skip
_iban = st.one_of(
    _chars(string.digits, 20).map(
        lambda d: f"DE{d[:2]} " + " ".join(d[k : k + 4] for k in (2, 6, 10, 14, 18))
    ),
    _chars(string.digits, 16).map(lambda d: f"GB{d[:2]}WEST{d[2:]}"),
)
_pem_body = _mixed(B64, 48)

# (secret, the text it is planted in)
PLANTS: list[st.SearchStrategy[tuple[str, str]]] = [
    _password.map(lambda p: (p, f"my password {p} stopped working")),
    _password.map(lambda p: (p, f"the password is {p}, please reset")),
    _password.map(lambda p: (p, f"PASSWORD={p}")),
    _chars(ALNUM, 24).map(lambda k: (k, f"charge it with sk_live_{k} today")),
    _chars(ALNUM, 24).map(lambda k: (k, f"restricted key rk_test_{k}")),
    _chars(ALNUM + "_-", 35).map(lambda k: ("AIza" + k, f"maps key AIza{k} here")),
    _chars(string.ascii_uppercase + string.digits, 16).map(
        lambda k: ("AKIA" + k, f"access key AKIA{k} in prod")
    ),
    _mixed(B64, 40).map(lambda k: (k, f"aws_secret_access_key = {k}")),
    _mixed(B64, 40).map(lambda k: (k, f"key id AKIAIOSFODNN7EXAMPLE secret {k}")),
    _ssn.map(lambda s: (s, f"my SSN is {s}, keep it safe")),
    _iban.map(lambda i: (i, f"refund to IBAN {i} please")),
    st.tuples(st.sampled_from(["RSA ", "EC ", "OPENSSH ", ""]), _pem_body).map(
        lambda t: (
            t[1],
            f"-----BEGIN {t[0]}PRIVATE KEY-----\n{t[1]}\n-----END {t[0]}PRIVATE KEY-----",
        )
    ),
    _chars(ALNUM, 34).map(lambda k: ("hf_" + k, f"HF token hf_{k}")),
    st.tuples(
        st.sampled_from(["password", "api_key", "secret", "token", "client_secret"]),
        _mixed(ALNUM, 10),
    ).map(lambda t: (t[1], f'config {{"{t[0]}": "{t[1]}", "retries": 3}}')),
    _email.map(lambda e: (e, f"write to {e} about it")),
    st.tuples(_name, _name).map(lambda n: (f"{n[0]} {n[1]}", f"Hi, my name is {n[0]} {n[1]}.")),
    _name.map(lambda n: (n, f"Dear {n},\nthe order is late.")),
    st.tuples(_name, _name).map(lambda n: (n[1], f"Please ask Dr. {n[1]} about it.")),
    st.tuples(_name, _name).map(lambda n: (f"{n[0]} {n[1]}", f"Best regards,\n{n[0]} {n[1]}")),
    _chars(ALNUM, 30).map(lambda k: ("ghp_" + k, f"token ghp_{k}")),
    _chars(ALNUM, 20).map(lambda k: (k, f"Authorization: Bearer {k}")),
    _chars(ALNUM, 24).map(lambda k: (k, f"OPENAI_API_KEY sk-proj-{k}")),
]
SYSTEMS = [
    "You label support tickets for a shop. Reply with one label.",
    "You triage e-mails for the billing team. Reply with one label.",
    "You sort product reviews for the catalogue team. Reply with one label.",
]
WINDOW = 12  # no run of this many characters of a secret may survive, not just the whole


def _traces(secret: str) -> set[str]:
    if len(secret) <= WINDOW:
        return {secret}
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def _log(path: Path, plants: list[tuple[str, str]], emails: list[str], repeat: int) -> Path:
    users = [f"u_{n}" for n in range(6)] + emails
    rows, i = [], 0
    for u, user in enumerate(users):
        for s, system in enumerate(SYSTEMS):
            if u == 0 and s == 0 and plants:  # a secret in a system prompt, too
                system = f"{plants[0][1]}\n{system}"
            rows.append(
                openai_line(
                    f"r{i}", user_id=user, feature="triage", completion=2,
                    ts=f"2026-10-01T10:{i // 60:02d}:{i % 60:02d}Z",
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": "Please classify this message about a refund."},
                    ],
                )
            )  # fmt: skip
            i += 1
    for p, (_, text) in enumerate(plants):
        for _ in range(repeat):  # one user, one template: enough repeats to pass a frequency test
            rows.append(
                openai_line(
                    f"r{i}", user_id=users[p % len(users)], feature="triage", completion=2,
                    ts=f"2026-10-01T11:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    messages=[
                        {"role": "system", "content": SYSTEMS[p % len(SYSTEMS)]},
                        {"role": "user", "content": f"Classify this: {text}"},
                    ],
                )
            )  # fmt: skip
            i += 1
    return write_jsonl(path, rows)


def _check(out: Path, plants: list[tuple[str, str]], emails: list[str], repeat: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    logs = _log(out / "logs.jsonl", plants, emails, repeat)
    runner = CliRunner()
    env = {"COLUMNS": "400", "NO_COLOR": "1"}  # no wrapping: a secret cannot hide across lines
    analyzed = runner.invoke(app, ["analyze", str(logs), "-o", str(out / "o")], env=env)
    assert analyzed.exit_code == 0, analyzed.output
    md = runner.invoke(
        app,
        ["report", str(out / "o" / "analysis.json"), "--format", "md", "-o", str(out / "r.md")],
        env=env,
    )
    assert md.exit_code == 0, md.output
    outputs = {"terminal": analyzed.output + md.output}
    for name in (
        "analysis.json",
        "report.html",
        "router.yaml",
        "litellm_config.yaml",
        "portkey.json",
    ):
        outputs[name] = (out / "o" / name).read_text(encoding="utf-8")
    outputs["report.md"] = (out / "r.md").read_text(encoding="utf-8")
    secrets = [s for s, _ in plants] + emails
    for name, text in outputs.items():
        folded = " ".join(text.split())  # a secret split over lines still counts
        for secret in secrets:
            for trace in _traces(" ".join(secret.split())):
                assert trace not in folded and trace.lower() not in folded.lower(), (
                    f"{trace!r} of {secret!r} survives in {name}"
                )


@settings(
    max_examples=examples(2, 10),  # each draws every kind of secret, and runs analyze and report
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plants=st.tuples(*PLANTS), emails=st.lists(_email, min_size=1, max_size=2, unique=True))
def test_no_planted_secret_survives(
    tmp_path_factory: pytest.TempPathFactory,
    plants: tuple[tuple[str, str], ...],
    emails: list[str],
) -> None:
    _check(tmp_path_factory.mktemp("planted"), list(plants), emails, repeat=5)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    plants=st.lists(st.one_of(*PLANTS), min_size=10, max_size=40),
    emails=st.lists(_email, min_size=1, max_size=6, unique=True),
)
def test_no_planted_secret_survives_many(
    tmp_path_factory: pytest.TempPathFactory, plants: list[tuple[str, str]], emails: list[str]
) -> None:
    _check(tmp_path_factory.mktemp("planted-many"), plants, emails, repeat=8)
