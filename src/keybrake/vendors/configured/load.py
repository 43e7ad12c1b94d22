"""Turning definition files into registered vendors (docs/vendors.md, vendors defined by a file).

Built-in definitions are package data (`keybrake/vendors/definitions/*.toml`); an operator's are
the `*.toml` files of `KEYBRAKE_VENDORS_DIR` (default `<data-dir>/vendors/`). Loading is
all-or-nothing: every file is read and checked (syntax, keys, a name clashing with another
vendor, a policy field another vendor declares differently) before any is registered, so an
invalid file stops start-up and nothing is half-loaded. Definitions are read when a process
starts: a changed file takes effect on restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_CEILING, Decimal
from importlib import resources
from pathlib import Path

from keybrake.core.money import MICRO
from keybrake.vendors import registry
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.policy import policy_input
from keybrake.vendors.configured.schema import Definition, DefinitionError
from keybrake.vendors.configured.vendor import ConfiguredVendor
from keybrake.vendors.registry import VendorSetting, VendorSettingValues, VendorSpec

PACKAGE = "keybrake.vendors.definitions"
# Vendors registered from a directory by `install` (name → file): replaced by the next install.
_INSTALLED: dict[str, str] = {}
_PACKAGED: dict[str, str] = {}  # the built-in definitions (name → package resource)


def spec_of(definition: Definition) -> VendorSpec:
    """The registry entry of a definition: its price settings (`VendorSetting`, decimal USD,
    rounded up to micro-USD when built) and its scope fields' input model."""
    settings = tuple(
        VendorSetting(env, env.lower(), "decimal", Decimal(micro) / MICRO)
        for env, micro in definition.settings().items()
    )

    def build(values: VendorSettingValues) -> ConfiguredVendor:
        prices = {
            s.env: int((Decimal(values[s.name]) * MICRO).to_integral_value(rounding=ROUND_CEILING)) for s in settings
        }
        return ConfiguredVendor(definition, prices)

    return VendorSpec(definition.name, build, settings, policy_input=policy_input(definition))


def read_file(path: Path) -> Definition:
    """One operator file, checked (its name must equal the file's stem; group or others may not write
    it, so `vendors check` refuses what start-up refuses). Raises DefinitionError."""
    if not packaged_file(path):
        _not_writable_by_others(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), "", f"cannot be read: {exc}") from None
    return parse_definition(text, str(path), path.stem)


def package_definitions() -> list[Definition]:
    """The built-in definitions shipped with Keybrake, by file name."""
    root = resources.files(PACKAGE)
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            name = entry.name.removesuffix(".toml")
            out.append(parse_definition(entry.read_text(encoding="utf-8"), f"{PACKAGE}/{entry.name}", name))
    return out


def packaged_file(path: Path) -> bool:
    """Whether `path` is one of the package's own definition files (`vendors check` on it)."""
    root = Path(str(resources.files(PACKAGE)))
    return path.resolve().parent == root.resolve()


def directory_definitions(directory: Path) -> list[Definition]:
    """Every definition in `directory`: each `*.toml` file; another entry (not hidden) is refused
    so that a misnamed file is never silently skipped. Raises DefinitionError."""
    _not_writable_by_others(directory)
    out = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.suffix != ".toml" or not entry.is_file():
            raise DefinitionError(
                str(entry), "", "is not a vendor definition: this directory holds only <name>.toml files"
            )
        out.append(read_file(entry))
    return out


def _not_writable_by_others(path: Path) -> None:
    """Refuse a definition file or directory that group or others may write: a definition decides
    where the operator's secrets are sent (`base_url`, `upstream_hosts`). Raises DefinitionError."""
    if path.stat().st_mode & 0o022:
        raise DefinitionError(
            str(path), "", "is writable by group or others (chmod go-w): a definition decides where secrets are sent"
        )


def check_together(definitions: Sequence[Definition], others: Iterable[VendorSpec]) -> None:
    """Refuse a name that another vendor (or definition) has, and a scope field another vendor
    declares other than as the same shared kind (`SHARED`). Raises DefinitionError."""
    taken = {s.name: "a built-in vendor" for s in others}
    fields: dict[str, tuple[str | None, str]] = {}
    for other in others:
        model = other.policy_input
        if model is not None:
            shared = getattr(model, "SHARED", {})
            for f in model.model_fields:
                fields.setdefault(f, (shared.get(f), f"vendor {other.name!r}"))  # named by its first declarer
    for d in definitions:
        if d.name in taken:
            raise DefinitionError(d.source, "name", f"{d.name!r} is already {taken[d.name]}")
        if d.name in registry.RESERVED_NAMES:
            raise DefinitionError(d.source, "name", f"{d.name!r} is one of Keybrake's own path prefixes")
        taken[d.name] = f"defined by {d.source}"
        for i, sc in enumerate(d.scopes):
            kind = "email_domain" if sc.match == "email_domain" else None
            found = fields.get(sc.field)
            if found is not None and (found[0] is None or found[0] != kind) and found[1] != f"vendor {d.name!r}":
                raise DefinitionError(
                    d.source,
                    f"scope[{i}].field",
                    f"{sc.field!r} is a policy field of {found[1]} with another meaning; name this one differently",
                )
            fields.setdefault(sc.field, (kind, f"vendor {d.name!r}"))


def register_package_definitions() -> list[VendorSpec]:
    """Register the built-in definitions (at import of `keybrake.vendors`)."""
    defs = package_definitions()
    check_together(defs, registry.specs())
    _PACKAGED.update((d.name, d.source) for d in defs)
    return [registry.register(spec_of(d)) for d in defs]


def install(directory: Path, *, explicit: bool) -> dict[str, str]:
    """Register the definitions of `directory`, replacing those a previous `install` registered;
    all or nothing. A missing directory holds none unless it was set explicitly
    (`KEYBRAKE_VENDORS_DIR`). Returns name → file. Raises DefinitionError."""
    if not directory.is_dir():
        if explicit or directory.exists():
            raise DefinitionError(str(directory), "", "KEYBRAKE_VENDORS_DIR is not a directory")
        defs: list[Definition] = []
    else:
        defs = directory_definitions(directory)
    others = [s for s in registry.specs() if s.name not in _INSTALLED]
    check_together(defs, others)
    specs = [spec_of(d) for d in defs]
    for name in list(_INSTALLED):
        registry.unregister(name)
    _INSTALLED.clear()
    for spec, d in zip(specs, defs, strict=True):
        registry.register(spec)
        _INSTALLED[d.name] = d.source
    return dict(_INSTALLED)


def installed() -> dict[str, str]:
    """The vendors registered from a directory now: name → file."""
    return dict(_INSTALLED)


def origin(spec: VendorSpec) -> str:
    """Where a registered vendor comes from: "built-in", "built-in definition", its definition
    file, or "registered in Python" (a wrapper's `registry.register`)."""
    if spec.name in _INSTALLED:
        return _INSTALLED[spec.name]
    if spec.name in _PACKAGED:
        return "built-in definition"
    return "built-in" if getattr(spec.build, "__module__", "").startswith("keybrake.") else "registered in Python"


def uninstall() -> None:
    """Unregister every vendor `install` registered (a test's, when it is done)."""
    for name in list(_INSTALLED):
        registry.unregister(name)
    _INSTALLED.clear()
