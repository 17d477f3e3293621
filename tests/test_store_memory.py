"""DuckDB's memory budget: fixed whatever the machine, raised with --memory or $ADVISOR_MEMORY."""

from __future__ import annotations

import pytest

from advisor import store
from advisor.errors import AdvisorError


def _limit_mib(con) -> float:
    shown = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    number, unit = shown.split()
    return float(number) * {"MiB": 1, "GiB": 1024, "KiB": 1 / 1024}[unit]


def test_a_store_holds_duckdb_to_the_default_budget(monkeypatch) -> None:
    monkeypatch.delenv(store.MEMORY_ENV, raising=False)
    con = store.connect()
    assert 900 <= _limit_mib(con) <= 960  # 1 GB = 953.6 MiB, not 80% of the machine


def test_the_budget_comes_from_the_argument_then_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(store.MEMORY_ENV, "600MB")
    assert 560 <= _limit_mib(store.connect()) <= 580
    assert 290 <= _limit_mib(store.connect(memory="300MiB")) <= 310


@pytest.mark.parametrize("bad", ["lots", "1.5", "-2GB", "2 GB; DROP TABLE requests", ""])
def test_a_budget_that_is_not_a_size_is_refused_by_name(monkeypatch, bad: str) -> None:
    monkeypatch.delenv(store.MEMORY_ENV, raising=False)
    if not bad:  # empty: the default
        assert store.memory_limit(bad) == store.DEFAULT_MEMORY
        return
    with pytest.raises(AdvisorError, match="not a memory size"):
        store.memory_limit(bad)
