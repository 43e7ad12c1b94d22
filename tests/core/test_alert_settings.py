"""KEYBRAKE_ALERT_TIMEOUT: parsed, bounded, and the lease and backoff derived from the settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.config import SettingsError, from_env
from keybrake.jobs.alert_delivery import lease_ms
from keybrake.jobs.alert_format import MAX_RETRY_DELAY_MS, retry_delay_ms


def test_alert_timeout_is_read_and_defaults_to_five_seconds() -> None:
    assert from_env({}).alert_timeout_s == 5.0
    s = from_env({"KEYBRAKE_ALERT_TIMEOUT": "2.5"})
    assert s.alert_timeout_s == 2.5 and lease_ms(s) == 15_000


@pytest.mark.parametrize("raw", ["0", "0.05", "-1", "inf", "soon"])
def test_a_bad_alert_timeout_is_refused_by_name(raw: str) -> None:
    with pytest.raises(SettingsError, match="KEYBRAKE_ALERT_TIMEOUT"):
        from_env({"KEYBRAKE_ALERT_TIMEOUT": raw})


@given(st.integers(1, 40), st.floats(0.01, 60))
def test_backoff_doubles_and_is_capped_at_an_hour(attempts: int, base: float) -> None:
    d = retry_delay_ms(attempts, base)
    assert 0 < d <= MAX_RETRY_DELAY_MS
    assert retry_delay_ms(attempts + 1, base) in (min(2 * d, MAX_RETRY_DELAY_MS), MAX_RETRY_DELAY_MS, 2 * d + 1)
