"""Vendors Keybrake proxies. Each is one module implementing `Vendor` (vendors/base.py) and
declaring a `VendorSpec` (vendors/registry.py), or a definition file (vendors/configured/); the
built-in ones are registered here: the Python vendors, then the package's definitions."""

from __future__ import annotations

from keybrake.vendors import registry
from keybrake.vendors.configured.load import register_package_definitions
from keybrake.vendors.registry import RESERVED_NAMES, build_vendors
from keybrake.vendors.resend import SPEC as RESEND
from keybrake.vendors.stripe import SPEC as STRIPE
from keybrake.vendors.twilio import SPEC as TWILIO

for _spec in (STRIPE, TWILIO, RESEND):
    registry.register(_spec)
register_package_definitions()

__all__ = ["RESERVED_NAMES", "build_vendors", "registry"]
