"""KEYBRAKE_* settings added for Twilio and Resend: parsed, or refused with a clear message."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from keybrake.config import SettingsError, from_env


def test_vendor_settings_are_parsed(tmp_path: Path) -> None:
    rates = tmp_path / "twilio-rates.json"
    rates.write_text(json.dumps({"sms": {"US": "0.0079", "default": "0.09"}}))
    s = from_env(
        {
            "KEYBRAKE_TWILIO_RECONCILE_INTERVAL": "15",
            "KEYBRAKE_RESEND_RATE_USD": "0.00035",
            "KEYBRAKE_TWILIO_RATES_FILE": str(rates),
            "KEYBRAKE_MAX_BODY_BYTES": "2048",
        }
    )
    assert s.twilio_reconcile_interval_s == 15.0
    assert s.resend_rate_usd == Decimal("0.00035")
    assert s.twilio_rates.rate("sms", "US") == Decimal("0.0079")
    assert s.max_body_bytes == 2048
    pg = from_env(
        {
            "KEYBRAKE_DATABASE_URL": "postgres://kb:hunter2@db:5432/kb",
            "KEYBRAKE_PG_POOL_SIZE": "4",
            "KEYBRAKE_PG_POOL_TIMEOUT": "0.5",
            "KEYBRAKE_PG_STATEMENT_TIMEOUT_MS": "250",
            "KEYBRAKE_PG_CONNECT_TIMEOUT": "2",
        }
    )
    assert (pg.pg_pool_size, pg.pg_pool_timeout_s, pg.pg_statement_timeout_ms, pg.pg_connect_timeout_s) == (
        4,
        0.5,
        250,
        2,
    )
    assert "hunter2" not in repr(pg)  # the password never reaches a log through the settings
    defaults = from_env({})
    assert defaults.max_body_bytes is None and defaults.resend_rate_usd == Decimal("0.0004")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "0", "positive"),
        ("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "soon", "invalid"),
        ("KEYBRAKE_RESEND_RATE_USD", "-1", "non-negative"),
        ("KEYBRAKE_RESEND_RATE_USD", "four cents", "invalid"),
        ("KEYBRAKE_TWILIO_RATES_FILE", "/nonexistent/rates.json", "KEYBRAKE_TWILIO_RATES_FILE"),
        ("KEYBRAKE_DATABASE_URL", "mysql://db/keybrake", "postgresql://"),
        ("KEYBRAKE_PG_POOL_SIZE", "0", "at least 1"),
        ("KEYBRAKE_PG_POOL_SIZE", "many", "invalid"),
        ("KEYBRAKE_PG_STATEMENT_TIMEOUT_MS", "0", "at least 1"),
        ("KEYBRAKE_PG_CONNECT_TIMEOUT", "0", "at least 1"),
    ],
)
def test_bad_vendor_settings_are_refused(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        from_env({name: value})
