"""Vendor secrets: validated by shape, sealed under the master key, never returned."""

from __future__ import annotations

from typing import Any

from keybrake.admin.errors import ApiError, conflict, not_found, validation
from keybrake.admin.models import CredentialIn, RotateIn
from keybrake.config import Settings
from keybrake.core.timefmt import rfc3339
from keybrake.core.upstream_url import url_refusal
from keybrake.runtime import Runtime
from keybrake.store.base import CredentialInUse, CredentialRecord
from keybrake.tokens import new_id
from keybrake.vendors.base import ValidatedSecret, Vendor


def check_base_url(url: str, vendor: Vendor, settings: Settings) -> str:
    """docs/operations.md, upstream hosts: https to a vendor host (or a listed one); http only to loopback when allowed.

    The same rule (`keybrake.core.upstream_url.url_refusal`) is applied again before every
    request that would carry the secret, with the settings of the process sending it.
    Raises ApiError 422 naming `base_url`.
    """
    refusal = url_refusal(
        url,
        allowed_hosts=vendor.upstream_hosts,
        listed_hosts=settings.upstream_hosts,
        allow_insecure=settings.allow_insecure_upstream,
        vendor=vendor.name,
    )
    if refusal is not None:
        raise validation(refusal, "base_url")
    return url.rstrip("/")


def _validated(rt: Runtime, vendor_name: str, secret: Any) -> tuple[Vendor, ValidatedSecret]:
    vendor = rt.vendors.get(vendor_name)
    if vendor is None:
        raise validation(f"unknown vendor {vendor_name!r}; known: {', '.join(sorted(rt.vendors))}", "vendor")
    try:
        return vendor, vendor.validate_secret(secret)
    except ValueError as exc:
        raise validation(str(exc), "secret") from None


async def add(rt: Runtime, body: CredentialIn) -> dict[str, Any]:
    vendor, valid = _validated(rt, body.vendor, body.secret)
    base_url = check_base_url(body.base_url, vendor, rt.settings) if body.base_url else None
    now = rt.credential_store.now_ms()
    rec = CredentialRecord(
        body.name,
        vendor.name,
        rt.sealer.seal(valid.blob, f"credential:{body.name}"),
        valid.hint,
        base_url,
        valid.livemode,
        now,
        None,
        new_id("cg_"),  # this row's generation: keys issued for it are bound to it, not to the name
    )
    if not await rt.credential_store.insert_credential(rec):
        raise conflict(f"a credential named {body.name!r} already exists; rotate it instead")
    return await render(rt, rec)


async def rotate(rt: Runtime, name: str, body: RotateIn) -> dict[str, Any]:
    cred = await get_record(rt, name)
    vendor, valid = _validated(rt, cred.vendor, body.secret)
    # The secret is supplied again, so the destination may change with it (§4.1); omitted keeps it.
    base_url = check_base_url(body.base_url, vendor, rt.settings) if body.base_url else cred.base_url
    await rt.credential_store.rotate_credential(
        name, rt.sealer.seal(valid.blob, f"credential:{name}"), valid.hint, base_url, valid.livemode
    )
    return await render(rt, await get_record(rt, name))


async def get_record(rt: Runtime, name: str) -> CredentialRecord:
    for cred in await rt.credential_store.list_credentials():
        if cred.name == name:
            return cred
    raise not_found(f"credential {name!r}")


async def delete(rt: Runtime, name: str, *, revoke_keys: bool) -> dict[str, Any]:
    """docs/api.md: once this returns, no active key references the credential (one transaction
    with the credential row locked; keys issued concurrently are revoked too or refused).
    Raises 404 (no such credential), 409 (active keys and not revoke_keys)."""
    cred = await get_record(rt, name)
    out = await render(rt, cred)
    try:
        revoked = await rt.credential_store.delete_credential(
            name, revoke_keys=revoke_keys, reason=f"credential {name} deleted"
        )
    except CredentialInUse as busy:
        raise ApiError(
            409,
            "conflict",
            f"{busy.active} active keys use credential {name!r}; revoke them first or pass revoke_keys=true",
        ) from None
    if revoked is None:
        raise not_found(f"credential {name!r}")
    out["active_keys"] = 0
    out["revoked_keys"] = revoked
    out["deleted"] = True
    return out


async def render(rt: Runtime, cred: CredentialRecord) -> dict[str, Any]:
    return {
        "object": "credential",
        "name": cred.name,
        "vendor": cred.vendor,
        "generation": cred.generation,
        "base_url": cred.base_url,
        "created_at": rfc3339(cred.created_at),
        "rotated_at": rfc3339(cred.rotated_at) if cred.rotated_at else None,
        "secret_hint": cred.secret_hint,
        "livemode": cred.livemode,
        "active_keys": await rt.credential_store.active_key_count(cred.name),
    }
