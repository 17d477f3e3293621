"""DIF-021 end to end: prompts regenerated within minutes are not routed by `advisor analyze`.

tests/fixtures/regenerations/traffic.jsonl (written by make.py beside it) holds polite-rewrite
requests the rules call easy, and 30 warranty-dispute prompts each sent again by the same user in
the same conversation minutes later. Analysed as logged, the disputes stay on the logged model;
the same log with every resend dropped routes them like the rest: the regenerations, not the
prompts, keep them off the cheaper tier.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "regenerations" / "traffic.jsonl"


def _routed(log: Path, out: Path) -> dict[str, bool]:
    """request id -> routed, from `advisor analyze` on `log`."""
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "analyze", str(log), "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    con = duckdb.connect(str(out / "advisor.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT request_id, routed FROM tiering_decisions").fetchall()
    finally:
        con.close()
    return {rid: bool(routed) for rid, routed in rows}


def test_regenerated_prompts_are_not_routed(tmp_path: Path) -> None:
    routed = _routed(FIXTURE, tmp_path / "logged")
    regenerated = {rid: r for rid, r in routed.items() if rid.startswith("regen-")}
    plain = [r for rid, r in routed.items() if rid.startswith("plain-")]
    assert len(regenerated) == 70 and len(plain) == 160
    assert not any(regenerated.values()), sorted(rid for rid, r in regenerated.items() if r)
    assert all(plain), "the easy rewrites around them are still routed"


def test_the_same_prompts_sent_once_are_routed(tmp_path: Path) -> None:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    # a regeneration's id ends in its send number: keep the first send of each prompt
    once = [ln for ln in lines if not json.loads(ln)["id"].startswith("regen-")
            or json.loads(ln)["id"].endswith("-0")]  # fmt: skip
    log = tmp_path / "once.jsonl"
    log.write_text("\n".join(once) + "\n", encoding="utf-8")
    routed = _routed(log, tmp_path / "once")
    disputes = [r for rid, r in routed.items() if rid.startswith("regen-")]
    assert len(disputes) == 30 and all(disputes)
