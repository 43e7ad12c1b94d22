from __future__ import annotations

from decimal import Decimal

import pytest

from keybrake.core.errors import CODES
from keybrake.core.money import MoneyError, format_usd, minor_to_micro_usd, parse_usd
from keybrake.tokens import VAULT_PREFIX, is_well_formed, new_token
from keybrake.vendors.twilio_errors import twilio_code


@pytest.mark.parametrize(
    ("value", "micro"), [(100, 100_000_000), ("0.000001", 1), (0.1, 100_000), ("12.5", 12_500_000), (0, 0)]
)
def test_parse_usd(value: object, micro: int) -> None:
    assert parse_usd(value) == micro


@pytest.mark.parametrize("value", ["0.0000001", -1, "abc", True, None, "NaN", [1]])
def test_parse_usd_refuses(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_usd(value)


def test_format_usd_is_plain_and_exact() -> None:
    assert format_usd(1) == "0.000001"
    assert format_usd(100_000_000) == "100"
    assert format_usd(1_500_000) == "1.5"


def test_minor_units_and_rounding() -> None:
    assert minor_to_micro_usd(100, 2, Decimal(1), reserve=True) == 1_000_000
    assert minor_to_micro_usd(1000, 0, Decimal("0.0067"), reserve=True) == 6_700_000  # JPY
    assert minor_to_micro_usd(1000, 3, Decimal("3.26"), reserve=True) == 3_260_000  # KWD
    assert minor_to_micro_usd(1, 2, Decimal("0.3333333"), reserve=True) == 3334
    assert minor_to_micro_usd(1, 2, Decimal("0.3333333"), reserve=False) == 3333


def test_tokens_checksum() -> None:
    t = new_token(VAULT_PREFIX)
    assert is_well_formed(t, VAULT_PREFIX)
    flipped = t[:-7] + ("A" if t[-7] != "A" else "B") + t[-6:]
    assert not is_well_formed(flipped, VAULT_PREFIX)
    assert not is_well_formed("vault_key_short", VAULT_PREFIX)


def test_twilio_codes_follow_the_table_order() -> None:
    assert twilio_code("key_missing") == 401001
    assert twilio_code("key_expired") == 401004
    assert twilio_code("spend_cap_exceeded") == 429001
    assert twilio_code("send_cap_exceeded") == 429003
    assert len({c for c, _ in CODES}) == len(CODES)
