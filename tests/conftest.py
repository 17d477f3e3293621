"""Shared fixtures: where the repository and the shared real-world data live, and the demo
traffic analysed once for the whole session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import SHARED, TIKTOKEN_CACHE, require_shared, require_tiktoken

if TYPE_CHECKING:
    from advisor.api import AnalyzeResult

SAMPLE_TRAFFIC = Path(__file__).resolve().parents[1] / "sample_logs" / "traffic.jsonl.gz"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """The shared tiktoken cache for the whole session, module-scoped fixtures included (an
    autouse fixture is set up after them), so `pytest` alone needs no TIKTOKEN_CACHE_DIR."""
    if TIKTOKEN_CACHE.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data next to the project (read-only real data; see its README)."""
    return require_shared(SHARED / "data", "the real traces")


@pytest.fixture(scope="session")
def analysed_sample(tmp_path_factory: pytest.TempPathFactory) -> AnalyzeResult:
    """`advisor analyze sample_logs/traffic.jsonl.gz` with the curated prices and no report,
    run once: for tests that only read its outputs (open its store read-only)."""
    from advisor import api

    require_tiktoken()  # its figures count shared prefixes with o200k_base
    out = tmp_path_factory.mktemp("sample-analysis")
    return api.analyze([str(SAMPLE_TRAFFIC)], out_dir=out, write_report=False)


@pytest.fixture
def needs_tiktoken() -> None:
    """Exact token counts: o200k_base from ../shared/tiktoken-cache."""
    require_tiktoken()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the shared tiktoken cache (when present) and no user-level advisor settings."""
    if TIKTOKEN_CACHE.is_dir():
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.delenv("ADVISOR_TOKENIZER", raising=False)


@pytest.fixture
def con():
    """A fresh in-memory store."""
    from advisor import store

    connection = store.connect()
    yield connection
    connection.close()
