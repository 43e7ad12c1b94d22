"""Report settings: bounds a user can read in docs/operations.md, errors naming the variable."""

from __future__ import annotations

import pytest

from keybrake.config import SettingsError, from_env


def test_report_pool_size_is_bounded_to_32_and_timeout_to_at_least_100_ms() -> None:
    assert from_env({"KEYBRAKE_REPORT_POOL_SIZE": "32"}).report_pool_size == 32
    with pytest.raises(SettingsError, match=r"KEYBRAKE_REPORT_POOL_SIZE must be at most 32 \(got 33\).*connection"):
        from_env({"KEYBRAKE_REPORT_POOL_SIZE": "33"})
    with pytest.raises(SettingsError, match=r"KEYBRAKE_REPORT_POOL_SIZE must be at least 1 \(got 0\)"):
        from_env({"KEYBRAKE_REPORT_POOL_SIZE": "0"})
    assert from_env({"KEYBRAKE_REPORT_TIMEOUT_MS": "100"}).report_timeout_ms == 100
    with pytest.raises(SettingsError, match=r"KEYBRAKE_REPORT_TIMEOUT_MS must be at least 100 \(got 99\)"):
        from_env({"KEYBRAKE_REPORT_TIMEOUT_MS": "99"})
