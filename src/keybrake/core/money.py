"""Money is an integer of micro-USD (1 USD = 1,000,000) below the API edge."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = 1_000_000
_MICRO_D = Decimal(MICRO)


class MoneyError(ValueError):
    """A money value at the API edge that is not a non-negative amount with ≤ 6 decimals."""


def parse_usd(value: object) -> int:
    """Parse a JSON number or decimal string in USD into micro-USD, exactly, or raise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise MoneyError("must be a number or a decimal string in US dollars")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:
        raise MoneyError("must be a number or a decimal string in US dollars") from exc
    if not d.is_finite():
        raise MoneyError("must be a finite amount")
    if d < 0:
        raise MoneyError("must be zero or more")
    micro = d * _MICRO_D
    if micro != micro.to_integral_value():
        raise MoneyError("has more than 6 decimals")
    if micro > 10**18:
        raise MoneyError("is too large")
    return int(micro)


def format_usd(micro: int) -> str:
    """Plain decimal string, no exponent, no trailing zeros: 1500000 → '1.5'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


def to_json_number(micro: int) -> Decimal:
    """A Decimal that serialises (simplejson use_decimal) as the exact plain decimal."""
    return Decimal(format_usd(micro))


def human_usd(micro: int) -> str:
    """'$100.00' for messages; keeps sub-cent precision when there is some."""
    whole, frac = divmod(micro, MICRO)
    if frac % 10_000 == 0:
        return f"${whole:,}.{frac // 10_000:02d}"
    return f"${format_usd(micro)}"


def minor_to_micro_usd(amount_minor: int, exponent: int, usd_per_major: Decimal, *, reserve: bool) -> int:
    """Convert a vendor amount in minor units to micro-USD.

    Rounds up when reserving (never under-reserve) and half-up when settling (docs/policy.md, currencies).
    """
    major = Decimal(amount_minor).scaleb(-exponent)
    micro = major * usd_per_major * _MICRO_D
    rounding = ROUND_CEILING if reserve else ROUND_HALF_UP
    return int(micro.to_integral_value(rounding=rounding))
