"""Vendor secrets: validated by shape, sealed under the master key, never returned."""

from __future__ import annotations

from typing import Any

from keybrake.admin.errors import ApiError, conflict, not_found, validation
from keybrake.admin.models import CredentialIn, RotateIn
from keybrake.config import Settings
from keybrake.core.upstream_url import url_refusal
from keybrake.runtime import Runtime
from keybrake.store.base import CredentialRecord
from keybrake.timefmt import rfc3339
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
    now = rt.store.now_ms()
    rec = CredentialRecord(
        body.name,
        vendor.name,
        rt.sealer.seal(valid.blob, f"credential:{body.name}"),
        valid.hint,
        base_url,
        valid.livemode,
        now,
        None,
    )
    if not await rt.store.insert_credential(rec):
        raise conflict(f"a credential named {body.name!r} already exists; rotate it instead")
    return await render(rt, rec)


async def rotate(rt: Runtime, name: str, body: RotateIn) -> dict[str, Any]:
    cred = await get_record(rt, name)
    vendor, valid = _validated(rt, cred.vendor, body.secret)
    # The secret is supplied again, so the destination may change with it (§4.1); omitted keeps it.
    base_url = check_base_url(body.base_url, vendor, rt.settings) if body.base_url else cred.base_url
    await rt.store.rotate_credential(
        name, rt.sealer.seal(valid.blob, f"credential:{name}"), valid.hint, base_url, valid.livemode
    )
    return await render(rt, await get_record(rt, name))


async def get_record(rt: Runtime, name: str) -> CredentialRecord:
    for cred in await rt.store.list_credentials():
        if cred.name == name:
            return cred
    raise not_found(f"credential {name!r}")


async def delete(rt: Runtime, name: str, *, revoke_keys: bool) -> dict[str, Any]:
    cred = await get_record(rt, name)
    active = await rt.store.active_key_count(name)
    if active and not revoke_keys:
        raise ApiError(
            409, "conflict", f"{active} active keys use credential {name!r}; revoke them first or pass revoke_keys=true"
        )
    if active:
        await rt.store.revoke_keys(label_prefix=None, vendor=None, credential=name, reason=f"credential {name} deleted")
    out = await render(rt, cred)
    await rt.store.delete_credential(name)
    out["active_keys"] = 0
    out["deleted"] = True
    return out


async def render(rt: Runtime, cred: CredentialRecord) -> dict[str, Any]:
    return {
        "object": "credential",
        "name": cred.name,
        "vendor": cred.vendor,
        "base_url": cred.base_url,
        "created_at": rfc3339(cred.created_at),
        "rotated_at": rfc3339(cred.rotated_at) if cred.rotated_at else None,
        "secret_hint": cred.secret_hint,
        "livemode": cred.livemode,
        "active_keys": await rt.store.active_key_count(cred.name),
    }
