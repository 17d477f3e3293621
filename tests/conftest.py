"""Shared fixtures: where the repository and the shared real-world data live."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data(repo_root: Path) -> Path:
    """../shared/data next to the project (read-only real data; see its README)."""
    return repo_root.parent / "shared" / "data"


TIKTOKEN_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken-cache"


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
