"""The guard of tests that read ../shared: a skip naming what is missing, a failure under CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REQUIRE_SHARED, require_shared


def test_missing_shared_data_skips_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_SHARED, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs the traces at .*nothing-here"):
        require_shared(tmp_path / "nothing-here", "the traces")


def test_missing_shared_data_fails_where_ci_requires_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUIRE_SHARED, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_SHARED):
        require_shared(tmp_path / "nothing-here", "the traces")


def test_present_shared_data_is_returned(tmp_path: Path) -> None:
    assert require_shared(tmp_path, "a folder") == tmp_path
