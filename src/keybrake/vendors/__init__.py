"""Built-in vendors. Adding one is a module implementing `Vendor` and a line here."""

from __future__ import annotations

from decimal import Decimal

from keybrake.vendors.base import Vendor
from keybrake.vendors.rates import DEFAULT_TWILIO_RATES, TwilioRates
from keybrake.vendors.resend import DEFAULT_RATE_USD, Resend
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.twilio import Twilio

# Names that can never be vendors: they are Keybrake's own surface (docs/api.md).
RESERVED_NAMES = frozenset({"v1", "_keybrake", "healthz", "readyz", "metrics", "openapi.json"})


def builtin_vendors(
    *, twilio_rates: TwilioRates = DEFAULT_TWILIO_RATES, resend_rate_usd: Decimal = DEFAULT_RATE_USD
) -> dict[str, Vendor]:
    vendors: list[Vendor] = [Stripe(), Twilio(twilio_rates), Resend(resend_rate_usd)]
    out = {v.name: v for v in vendors}
    assert not RESERVED_NAMES & out.keys()
    return out
