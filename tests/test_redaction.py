"""Redaction: every kind of secret and personal datum the README promises to mask is masked,
ordinary text is left alone, a cut never leaves half a secret, and the rules file is validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import openai_line, write_jsonl

from advisor import api
from advisor.errors import RuleError
from advisor.redact import excerpt, load_redactor, redact

# (text, the part that must not survive)
SECRETS = [
    ("my password Hunter2Winter2026 please", "Hunter2Winter2026"),
    ("password is Hunter2Winter2026", "Hunter2Winter2026"),
    ("DB_PASSWORD=s3cr3t-value", "s3cr3t-value"),
    ("charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    ("rk_test_51H8abcdEFGHijklMNOPqrst ok", "51H8abcdEFGHijklMNOPqrst"),
    ("maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "bPxRfiCYEXAMPLEKEY",
    ),
    ("SSN 123-45-6789 on file", "123-45-6789"),
    ("social security number 123456789", "123456789"),
    ("pay to DE89 3704 0044 0532 0130 00 today", "3704 0044 0532"),
    ("IBAN GB82WEST12345698765432", "GB82WEST12345698765432"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nabc+/def\n"
        "-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7bq",
    ),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "b3BlbnNzaC1rZXktdjEAAAAA"),
    ("token hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345", "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"),
    ('{"password": "correct horse battery"}', "correct horse battery"),
    ('{"api_key": "abc123def456"}', "abc123def456"),
    ('{"client_secret": "zzTopSecret"}', "zzTopSecret"),
    ("{'token': 'qwerty-uiop'}", "qwerty-uiop"),
    ("write to jane.doe@example.com", "jane.doe@example.com"),
    ("Hi, my name is Aisha Khan and I need help", "Aisha Khan"),
    ("Dear Ingrid,\nthanks", "Ingrid"),
    ("Best regards,\nSofia Becker", "Sofia Becker"),
    ("Name: Jonas Novak", "Jonas Novak"),
    ("please ask Dr. Okafor", "Okafor"),
    ("Ms Tanaka called", "Tanaka"),
    ("Bearer abcdefghijklmnop.qrs", "abcdefghijklmnop.qrs"),
    ("sk-proj-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
    ("call +44 20 7946 0958 now", "7946 0958"),
]

ORDINARY = [
    "The meeting is on 2026-10-18 at 10:30; the invoice total is $1,299.99 (EUR 1.299,99).",
    "Order #12345678 shipped; see order 4471-22 for the return.",
    "Use gpt-4o-2024-08-06 or claude-3-5-sonnet-20241022 for this route.",
    "Please reset your password via the link: the password reset page is open.",
    "Your password expired yesterday; choose a new password soon.",
    "The token limit is 4096 tokens; max_tokens: 256 keeps answers short.",
    "Fiscal years 2024-2026 grew 10 000 000 units in ISO 8601 dates.",
    "Hi there, thanks for reaching out about the blender.",
    "This is Python code reviewed by the team.",
]


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=[s[1][:20] for s in SECRETS])
def test_every_kind_of_secret_is_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert secret not in excerpt(text), excerpt(text)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent() -> None:
    for text, _ in SECRETS:
        once = redact(text)
        assert redact(once) == once


def test_a_cut_never_leaves_half_a_secret() -> None:
    text = "Contact: jane.doe@example.com. " + "stable instructions " * 20
    cut = text.index("@") + 4  # a slice that ends inside the e-mail address
    assert "jane.doe" not in excerpt(text, 160, end=cut)
    assert "jane.doe" not in excerpt(text, 160, start=9, end=cut)
    value = "password Hunter2Winter2026 then the rest"
    start = value.index("Hunter2")  # the span alone lost its cue
    assert "Hunter2" not in excerpt(value, 60, start=start, end=start + 17)


def test_rules_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "redaction.yaml"
    bad.write_text(
        "schema_version: 1\nkind: redaction\nrules:\n"
        "  - {id: RED-999, title: t, label: '[X]', pattern: '(unclosed', rationale: r,\n"
        "     cases: {pass: [{text: a, secret: a}], fail: [b]}}\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError, match=r"rules\.0\.pattern.*not a regular expression"):
        load_redactor(tmp_path)


def test_email_user_ids_are_masked_in_every_output(tmp_path: Path) -> None:
    rows = [
        openai_line(f"r{i}", user_id="alice.smith@example.com" if i % 2 else "u_42", feature="chat")
        for i in range(6)
    ]
    logs = write_jsonl(tmp_path / "logs.jsonl", rows)
    result = api.analyze([str(logs)], out_dir=tmp_path / "out")
    users = [row.key for row in result.analysis.baseline.by_user]
    assert "u_42" in users and "[EMAIL]" in users
    for name in ("analysis.json", "report.html"):
        assert "alice.smith" not in (tmp_path / "out" / name).read_text(encoding="utf-8")
    assert "alice.smith" not in api.render_report(result.analysis, "md")


def test_money_with_many_digits_survives_redaction() -> None:
    """Analysis.redacted used to dump money as strings and scrub them: an amount with 13+
    digits read as a card number ('6.[NUMBER]'), and loading it failed. Money stays a Decimal
    until JSON."""
    from decimal import Decimal

    from advisor.analysis import Analysis

    golden = Path(__file__).resolve().parent / "golden" / "sample_analysis.json"
    data = json.loads(golden.read_text(encoding="utf-8"))
    base = Analysis.model_validate({**data, "generated_at": "2026-12-03T00:00:00Z"})
    amount = Decimal("6.1234567890123456")
    changed = base.model_copy(
        update={"baseline": base.baseline.model_copy(update={"cost": amount})}
    )
    assert changed.redacted().baseline.cost == amount


# Names after a cue are masked; a capitalised ordinary word after the same cue is not.
NAMES = [
    ("Hi John, the invoice is ready", "John"),
    ("Mr. Smith called on Monday", "Smith"),
    ("Regards,\nJohn Smith", "John Smith"),
    ("Dear May, your order shipped", "May"),  # a month that is a given name stays masked
    ("I am Batman and I need help", "Batman"),
    ("Patient: Maria Lopez, 45", "Maria Lopez"),
]
NOT_NAMES = [
    "Hi Team, the JSON export runs on Monday.",
    "Dear Customer, your order shipped.",
    "I am Python developer writing Markdown.",
    "Thanks, Monday works for me.",
    "Hello World in Python",
    "Dear Hiring Manager, I am Sure this fits.",
    "Best, The Acme Team",
]


@pytest.mark.parametrize(("text", "name"), NAMES, ids=[n for _, n in NAMES])
def test_names_after_a_cue_are_masked(text: str, name: str) -> None:
    out = excerpt(text)
    assert name not in out and "[NAME]" in out, out


@pytest.mark.parametrize("text", NOT_NAMES)
def test_ordinary_capitalised_words_are_not_names(text: str) -> None:
    assert redact(text) == text


def test_names_in_report_excerpts_are_masked(tmp_path: Path) -> None:
    """A name in a system prompt is masked in the excerpts analysis.json and the report show."""
    system = "Signed: Dr. Ingrid Svensson, head of support.\n" + (
        "You are the support desk of Acme. Answer briefly.   \n\n\n" * 40
    )
    rows = [
        openai_line(
            f"r{i}",
            ts=f"2026-10-01T12:{i:02d}:00Z",
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": f"order {i} is late"},
            ],
        )
        for i in range(30)
    ]
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    result = api.analyze([str(log)], out_dir=tmp_path / "out")
    for name in ("analysis", "report"):
        text = result.files[name].read_text(encoding="utf-8")
        assert "head of support" in text, name  # the excerpt is there...
        assert "Svensson" not in text and "Ingrid" not in text, name  # ...without the name
