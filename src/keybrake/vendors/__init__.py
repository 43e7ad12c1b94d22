"""Built-in vendors. Adding one is a module implementing `Vendor` and a line here."""

from __future__ import annotations

from keybrake.vendors.base import Vendor
from keybrake.vendors.stripe import Stripe

# Names that can never be vendors: they are Keybrake's own surface (CONTRACT §2.0).
RESERVED_NAMES = frozenset({"v1", "_keybrake", "healthz", "readyz", "metrics", "openapi.json"})


def builtin_vendors() -> dict[str, Vendor]:
    vendors: list[Vendor] = [Stripe()]
    out = {v.name: v for v in vendors}
    assert not RESERVED_NAMES & out.keys()
    return out
