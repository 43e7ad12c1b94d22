"""Vendor secrets: validated by shape, sealed under the master key, never returned."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from keybrake.admin.errors import ApiError, conflict, not_found, validation
from keybrake.admin.models import CredentialIn, RotateIn
from keybrake.config import Settings
from keybrake.runtime import Runtime
from keybrake.store.base import CredentialRecord
from keybrake.timefmt import rfc3339
from keybrake.vendors.base import ValidatedSecret, Vendor


def check_base_url(url: str, vendor: Vendor, settings: Settings) -> str:
    """CONTRACT §4.1: https to a vendor host (or a listed one); http only to loopback when allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise validation("base_url must be an https:// URL", "base_url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise validation("base_url may not carry userinfo, a query or a fragment", "base_url")
    host = parts.hostname.lower()
    if parts.scheme == "http":
        if not settings.allow_insecure_upstream or not _is_loopback(host):
            raise validation(
                "base_url must be https://; plain http is accepted only for loopback hosts "
                "with KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1",
                "base_url",
            )
    if not (_host_listed(host, vendor.upstream_hosts) or _host_listed(host, settings.upstream_hosts)):
        raise validation(
            f"base_url host {host!r} is not a {vendor.name} API host; list it in KEYBRAKE_UPSTREAM_HOSTS to allow it",
            "base_url",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_listed(host: str, listed: tuple[str, ...]) -> bool:
    """Exact names, `*.suffix`, or one inner `*` standing for one or more labels (`api.*.twilio.com`)."""
    for entry in listed:
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if "*" in entry[1:]:
            head, tail = entry.split("*", 1)
            if host.startswith(head) and host.endswith(tail) and len(host) > len(head) + len(tail):
                return True
        if host == entry:
            return True
    return False


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
