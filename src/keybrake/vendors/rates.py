"""Per-destination price tables for Twilio estimates (docs/policy.md, what a call costs).

Estimates are upper bounds reserved before a call; the vendor's real `price` settles them later.
The defaults are Twilio's published US/CA/GB list prices rounded up to cover carrier fees, and a
deliberately high default for every other country. Operators replace them with
`KEYBRAKE_TWILIO_RATES_FILE`, a JSON object of tables keyed by ISO 3166 country code:

    {"sms": {"US": "0.0083", "default": "0.10"}, "mms": {...}, "call_per_minute": {...}}

A table given in the file replaces the default table of that kind and must have a "default".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

KINDS = ("sms", "mms", "whatsapp", "call_per_minute")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class RatesError(ValueError):
    pass


@dataclass(frozen=True)
class TwilioRates:
    """USD per SMS segment, per MMS or WhatsApp message and per call minute, by destination country."""

    tables: Mapping[str, Mapping[str, Decimal]]

    def rate(self, kind: str, country: str | None) -> Decimal:
        table = self.tables[kind]
        return table.get(country or "", table["default"])


def _table(values: dict[str, str]) -> Mapping[str, Decimal]:
    return MappingProxyType({k: Decimal(v) for k, v in values.items()})


DEFAULT_TWILIO_RATES = TwilioRates(
    MappingProxyType(
        {
            "sms": _table({"US": "0.0113", "CA": "0.0113", "GB": "0.0524", "default": "0.2000"}),
            "mms": _table({"US": "0.0270", "CA": "0.0270", "default": "0.2500"}),
            # Twilio's per-message fee plus Meta's template fees, which vary by country and category.
            "whatsapp": _table({"US": "0.0400", "default": "0.1500"}),
            "call_per_minute": _table({"US": "0.0140", "CA": "0.0140", "GB": "0.0400", "default": "0.5000"}),
        }
    )
)


def load_twilio_rates(path: Path) -> TwilioRates:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RatesError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RatesError('must hold a JSON object like {"sms": {"US": "0.0083", "default": "0.10"}}')
    tables = dict(DEFAULT_TWILIO_RATES.tables)
    for kind, table in raw.items():
        if kind not in KINDS:
            raise RatesError(f"unknown table {kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(table, dict) or "default" not in table:
            raise RatesError(f"table {kind!r} must be an object with a 'default' rate")
        parsed: dict[str, Decimal] = {}
        for country, value in table.items():
            if country != "default" and not _COUNTRY.match(country):
                raise RatesError(f"{kind}: {country!r} is not an upper-case ISO 3166 country code or 'default'")
            if not isinstance(value, str):
                raise RatesError(f'{kind}.{country}: rates are decimal strings, e.g. "0.0083"')
            try:
                d = Decimal(value)
            except InvalidOperation:
                raise RatesError(f"{kind}.{country}: {value!r} is not a decimal") from None
            if not d.is_finite() or d < 0:
                raise RatesError(f"{kind}.{country}: must be a non-negative decimal")
            parsed[country] = d
        tables[kind] = MappingProxyType(parsed)
    return TwilioRates(MappingProxyType(tables))
