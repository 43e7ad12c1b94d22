"""Scope fields of a configured vendor (docs/vendors.md, `[[scope]]`): the values each one reads
from a request, and the check of those values against the key's allowlist, by match kind —
`exact`, `prefix`, `email_domain` (`core.destinations.domain_allowed`) or `e164_prefix`
(`core.destinations.normalise_phone`, then the prefix)."""

from __future__ import annotations

from collections.abc import Mapping

from keybrake.core.destinations import domain_allowed, mask_phone, normalise_phone
from keybrake.core.errors import Denial
from keybrake.core.names import fold
from keybrake.vendors.configured import reading
from keybrake.vendors.configured import schema as s


def applies(scope: s.Scope, method: str, path: tuple[str, ...]) -> bool:
    return scope.endpoints is None or any(p.matches(method, path) for p in scope.endpoints)


def read_scopes(
    scopes: tuple[s.Scope, ...], src: reading.Source, method: str, path: tuple[str, ...]
) -> dict[int, tuple[str, ...]]:
    """Scope index → the values it checks (normalised: `local@domain`'s domain for email_domain,
    E.164 for e164_prefix), for every scope that applies to this endpoint. Raises the Denial of a
    value that cannot be read with certainty."""
    out: dict[int, tuple[str, ...]] = {}
    for i, scope in enumerate(scopes):
        if not applies(scope, method, path):
            continue
        values: list[str] = []
        for p in scope.paths:
            if scope.match == "email_domain":
                values += [a.rsplit("@", 1)[1] for a in reading.addresses(src, p, scope.address_field)]
            elif scope.match == "e164_prefix":
                values += [normalise_phone(v, default_calling_code=None) for v in reading.strings(src, p)]
            else:
                values += reading.strings(src, p)
        out[i] = tuple(values)
    return out


def check(
    scopes: tuple[s.Scope, ...], allowed: Mapping[str, tuple[str, ...]], read: Mapping[int, tuple[str, ...]]
) -> None:
    """Refuse (403 scope_violation) a value outside the key's allowlist for its field, or — for a
    `required` scope whose field the key sets — a request that names no value."""
    for i, values in read.items():
        scope = scopes[i]
        allowlist = allowed.get(scope.field)
        if allowlist is None:
            continue
        if not values and scope.required:
            raise Denial(
                "scope_violation",
                f"Request refused by {scope.field}: it names no {', '.join(p.text for p in scope.paths)}. "
                "Do not retry unchanged.",
            )
        for v in values:
            if not _allowed(scope.match, v, allowlist):
                raise Denial(
                    "scope_violation",
                    f"{_show(scope.match, v)} is outside this key's {scope.field}; nothing was sent. Do not retry.",
                )


def _allowed(kind: str, value: str, allowlist: tuple[str, ...]) -> bool:
    if kind == "exact":
        return value in allowlist
    if kind == "email_domain":
        return domain_allowed(value, allowlist)
    return any(value.startswith(p) for p in allowlist)  # prefix, e164_prefix


def _show(kind: str, value: str) -> str:
    if kind == "e164_prefix":
        return f"Destination {mask_phone(value)}"
    if kind == "email_domain":
        return f"Recipient domain {value!r}"
    return f"Value {value[:60]!r}"


def check_forbidden(forbids: tuple[s.Forbid, ...], src: reading.Source, method: str, path: tuple[str, ...]) -> None:
    """Refuse (403 scope_violation, on every key) a request naming a value a `[[forbid]]` lists at
    its paths: compared ignoring case and surrounding blanks (`core.names.fold`), `x*` as a prefix."""
    for f in forbids:
        if f.endpoints is not None and not any(p.matches(method, path) for p in f.endpoints):
            continue
        for p in f.paths:
            for value in reading.strings(src, p):
                folded = fold(value)
                if any(folded.startswith(v[:-1]) if v.endswith("*") else folded == v for v in f.values):
                    why = f" ({f.why})" if f.why else ""
                    raise Denial(
                        "scope_violation",
                        f"{p.text} may not be {value.strip()[:60]!r}{why}: Keybrake does not check or count what it "
                        "would do. Nothing was sent. Do not retry unchanged.",
                    )
