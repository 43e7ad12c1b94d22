"""The vendor registry: every vendor Keybrake proxies, by name, and the settings each one reads.

A vendor is one module that implements `Vendor` (vendors/base.py) and declares a `VendorSpec`:
its name, the `KEYBRAKE_*` variables it reads (`VendorSetting`) and a factory that builds it
from their values. The built-in vendors are registered when `keybrake.vendors` is imported; a
test (or an extension) registers another with `register(spec)` and nothing else changes: the
settings are read from the environment, the vendor is built and served by the same code
(docs/vendors.md, adding a vendor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from keybrake.vendors.base import Vendor

# Names that can never be vendors: they are Keybrake's own surface (docs/api.md; /docs is the admin API's page).
RESERVED_NAMES = frozenset({"v1", "_keybrake", "healthz", "readyz", "metrics", "openapi.json", "docs", "console"})

VendorSettingValues = Mapping[str, Any]  # setting name → parsed value (only those set)


@dataclass(frozen=True)
class VendorSetting:
    """One `KEYBRAKE_*` environment variable a vendor reads.

    `kind` says how config.py parses it, with the messages every setting of that kind gives:
    "number" (a finite float ≥ `low`), "decimal" (a finite, non-negative Decimal), or "file" (a
    path, unset when empty, handed to `load`, whose ValueError is reported as `ENV: message`).
    `default` is the value when the variable is unset.
    """

    env: str
    name: str
    kind: Literal["number", "decimal", "file"]
    default: Any
    low: float | None = None
    load: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class VendorSpec:
    """A vendor as the registry knows it: `build` makes the vendor from its settings' values.

    `build` is called with a mapping holding every declared setting (the default where unset).
    `policy_input` declares the vendor's own policy fields; the admin API composes them with the
    core fields when its app is built (register before that; docs/vendors.md, the registry). The
    vendor reads them typed with `Policy.vendor_fields` (core/policy.py).
    """

    name: str
    build: Callable[[VendorSettingValues], Vendor]
    settings: tuple[VendorSetting, ...] = ()
    # The vendor's own policy fields as the admin API takes them (a pydantic model whose
    # `RANKS` class variable says where each renders among all fields), or None.
    policy_input: type[BaseModel] | None = None

    def values(self, given: VendorSettingValues | None) -> dict[str, Any]:
        """Every declared setting's value: `given` where set, else the default."""
        return {s.name: (given or {}).get(s.name, s.default) for s in self.settings}


_SPECS: dict[str, VendorSpec] = {}


def register(spec: VendorSpec) -> VendorSpec:
    """Add (or replace) a vendor; raises ValueError for a reserved name or one that is no path segment."""
    if spec.name in RESERVED_NAMES or not spec.name.isascii() or not spec.name.replace("_", "").isalnum():
        raise ValueError(f"{spec.name!r} cannot be a vendor name")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a vendor registered with `register` (a test's own vendor, when it is done)."""
    _SPECS.pop(name, None)


def specs() -> tuple[VendorSpec, ...]:
    """Every registered vendor, in registration order."""
    return tuple(_SPECS.values())


def spec(name: str) -> VendorSpec | None:
    return _SPECS.get(name)


class HasVendorSettings(Protocol):
    """What `build_vendors` needs of `config.Settings`: parsed vendor settings, by vendor name."""

    @property
    def vendor_settings(self) -> Mapping[str, VendorSettingValues]: ...


def build_vendors(
    settings: HasVendorSettings | None = None, vendor_specs: Sequence[VendorSpec] | None = None
) -> dict[str, Vendor]:
    """The vendors of `vendor_specs` (None: every registered one), by name, each built from its
    settings (`settings=None`: all defaults)."""
    given = settings.vendor_settings if settings is not None else {}
    out: dict[str, Vendor] = {}
    for s in specs() if vendor_specs is None else vendor_specs:
        vendor = s.build(s.values(given.get(s.name)))
        assert vendor.name == s.name, f"the spec {s.name!r} built the vendor {vendor.name!r}"
        out[s.name] = vendor
    return out
