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
    ],
)
def test_bad_vendor_settings_are_refused(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        from_env({name: value})
