"""Vault keys: issue (token shown once), read with usage, patch, revoke, bulk revoke."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import simplejson
from pydantic import ValidationError

from keybrake.admin import budgets
from keybrake.admin.errors import ApiError, conflict, field_path, not_found, pydantic_message, validation
from keybrake.admin.key_models import key_models
from keybrake.admin.models import BulkRevokeIn, KeyIn
from keybrake.core.caps import KEY_CAPS
from keybrake.core.money import to_json_number
from keybrake.core.patterns import parse_pattern
from keybrake.core.policy import USD_FIELDS
from keybrake.core.timefmt import parse_duration_s, parse_rfc3339, rfc3339
from keybrake.core.windows import resets_at, window_start
from keybrake.runtime import Runtime
from keybrake.store.base import KeyQuery, KeyRecord
from keybrake.tokens import VAULT_PREFIX, new_id, new_token


def pydantic_field(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    err = exc.errors()[0]
    loc = field_path(err["loc"])
    msg = pydantic_message(err["msg"])
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    return msg, field or ""


def _expiry(rt: Runtime, created_at: int, expires_in: Any, expires_at: Any) -> int:
    if expires_in is not None and expires_at is not None:
        raise validation("give expires_in or expires_at, not both", "expires_in")
    if expires_at is not None:
        try:
            at = parse_rfc3339(expires_at) if isinstance(expires_at, str) else None
        except ValueError as exc:
            raise validation(str(exc), "expires_at") from None
        if at is None:
            raise validation("must be an RFC 3339 timestamp", "expires_at")
        field = "expires_at"
    else:
        try:
            ttl = parse_duration_s(expires_in) if expires_in is not None else rt.settings.default_key_ttl_s
        except ValueError as exc:
            raise validation(str(exc), "expires_in") from None
        at = rt.key_store.now_ms() + ttl * 1000
        field = "expires_in"
    if at <= rt.key_store.now_ms():
        raise validation("the expiry is in the past", field)
    if at - created_at > rt.settings.max_key_ttl_s * 1000:
        raise validation(
            f"the expiry is beyond the server's maximum key lifetime of {rt.settings.max_key_ttl_s}s "
            "from the key's creation (KEYBRAKE_MAX_KEY_TTL)",
            field,
        )
    return at


def _check_policy_fields(rt: Runtime, vendor: str, policy: dict[str, Any]) -> list[str]:
    fields = rt.vendors[vendor].policy_fields
    for name in policy:
        if name not in fields:
            owners = sorted(n for n, v in rt.vendors.items() if name in v.policy_fields)
            why = f"it is a policy field of {', '.join(owners)}" if owners else "no vendor supports it yet"
            raise validation(f"policy.{name} is not supported for {vendor} keys: {why}", f"policy.{name}")
    if unusable := rt.vendors[vendor].policy_problem(policy):  # a vendor field that cannot take effect
        raise validation(unusable[1], unusable[0])
    for name in ("allowed_endpoints", "approval_endpoints"):
        for i, text in enumerate(policy.get(name) or ()):
            problem = rt.vendors[vendor].pattern_problem(parse_pattern(text))  # a pattern that could never match
            if problem:
                raise validation(f"entry {i} ({text!r}): {problem}", f"policy.{name}")
    wait = policy.get("approval_timeout_seconds")
    if wait is not None and wait > rt.settings.approval_max_wait_s:
        raise validation(
            f"{wait}s is longer than this server lets a call wait for approval: at most "
            f"{rt.settings.approval_max_wait_s}s (KEYBRAKE_APPROVAL_MAX_WAIT)",
            "policy.approval_timeout_seconds",
        )
    warnings = []
    if not any(f in policy for f in ("daily_usd_cap", "total_usd_cap")):
        if rt.settings.require_usd_cap:
            raise validation(
                "this server requires a USD cap on every key (KEYBRAKE_REQUIRE_USD_CAP=1)", "policy.daily_usd_cap"
            )
        warnings.append("no USD cap is set: this key can move money without limit until it expires")
    if "allowed_endpoints" not in policy:
        warnings.append("no allowed_endpoints: every endpoint of the vendor is allowed")
    return warnings


DEFAULT_CREDENTIAL = "default"


def pick_credential(vendor: str, names: list[str], name: str | None) -> str:
    """The credential a key is issued on: `name` when given (one of `names`, the vendor's
    credentials); else the vendor's only credential; else the one named `default`.

    Raises ApiError 422 on `credential` naming the choices (docs/api.md, POST /v1/keys).
    """
    if name is not None:
        if name not in names:
            known = f"; {vendor} credentials: {', '.join(sorted(names))}" if names else ""
            raise validation(f"no {vendor} credential named {name!r}{known}", "credential")
        return name
    if not names:
        raise validation(f"no {vendor} credential exists; add one with POST /v1/credentials", "credential")
    if len(names) == 1:
        return names[0]
    if DEFAULT_CREDENTIAL in names:
        return DEFAULT_CREDENTIAL
    raise validation(
        f"several {vendor} credentials exist and none is named {DEFAULT_CREDENTIAL!r}; name one of: "
        f"{', '.join(sorted(names))}",
        "credential",
    )


async def _credential_for(rt: Runtime, vendor: str, name: str | None) -> tuple[str, list[str]]:
    """The credential to issue on (`pick_credential`) and the warning that says which one was
    chosen when the body named none and the vendor has several (`default` then)."""
    names = [c.name for c in await rt.credential_store.list_credentials() if c.vendor == vendor]
    chosen = pick_credential(vendor, names, name)
    if name is None and len(names) > 1:
        return chosen, [f"credential not named: using {chosen!r}"]
    return chosen, []


async def issue(rt: Runtime, body: KeyIn, issued_by: str | None) -> dict[str, Any]:
    if body.vendor not in rt.vendors:
        raise unknown_vendor(rt, body.vendor)
    policy = body.policy.to_store()
    warnings = _check_policy_fields(rt, body.vendor, policy)
    credential, chosen = await _credential_for(rt, body.vendor, body.credential)
    warnings += chosen
    warnings += await budgets.covering_warnings(rt, body.label, body.vendor, credential, policy)
    now = rt.key_store.now_ms()
    expires_at = _expiry(rt, now, body.expires_in, body.expires_at)
    token = new_token(VAULT_PREFIX)
    key = KeyRecord(
        new_id("vk_"),
        body.vendor,
        credential,
        body.label,
        body.metadata or {},
        policy,
        1,
        "active",
        now,
        expires_at,
        None,
        None,
        issued_by,
    )
    bound = await rt.key_store.issue_key(key, rt.hash_token(token))  # the credential row locked FOR SHARE
    if bound is None:  # deleted since it was checked above
        raise validation(f"no {body.vendor} credential named {credential!r}", "credential")
    out = await render(rt, bound)
    out["key"] = token
    out["vault_key"] = token
    out["warnings"] = warnings
    return out


async def issue_idempotent(rt: Runtime, body: KeyIn, issued_by: str, idempotency_key: str) -> dict[str, Any]:
    """docs/api.md: a repeat with the same body and issuing token returns the original answer,
    token included (sealed under the master key for 24 h only); a different body is 409."""
    if not 1 <= len(idempotency_key) <= 255:
        raise ApiError(400, "invalid_request", "Idempotency-Key must be 1 to 255 characters")
    body_hash = hashlib.sha256(body.model_dump_json(by_alias=True).encode()).hexdigest()
    purpose = f"issuance:{issued_by}:{idempotency_key}"
    since = rt.key_store.now_ms() - 24 * 3_600_000
    for _ in range(2):
        earlier = await rt.key_store.issuance_get(issued_by, idempotency_key, since)
        if earlier is not None:
            if earlier[0] != body_hash:
                raise conflict("this Idempotency-Key was used with a different body in the last 24 hours")
            answer: dict[str, Any] = json.loads(rt.sealer.open(earlier[1], purpose), parse_float=Decimal)
            return answer
        out = await issue(rt, body, issued_by)
        sealed = rt.sealer.seal(simplejson.dumps(out, use_decimal=True).encode(), purpose)
        if await rt.key_store.issuance_put(issued_by, idempotency_key, body_hash, sealed):
            return out
        # a concurrent duplicate recorded its answer first: that key stands, this one is revoked
        await rt.key_store.revoke_key(out["id"], "duplicate issuance (same Idempotency-Key)")
    raise conflict("this Idempotency-Key is being used concurrently; retry")


async def get_record(rt: Runtime, key_id: str) -> KeyRecord:
    key = await rt.key_store.get_key(key_id)
    if key is None:
        raise not_found(f"key {key_id!r}")
    return key


def status_of(key: KeyRecord, now: int) -> str:
    if key.status == "revoked":
        return "revoked"
    return "expired" if key.expires_at <= now else "active"


def render_policy(policy: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Every policy field of `fields` (`KeyModels.fields`, in order), null when unset; money in USD."""
    out: dict[str, Any] = {}
    for name in fields:
        value = policy.get(name)
        if value is not None and name in USD_FIELDS:
            value = to_json_number(value)
        out[name] = value
    return out


async def render(rt: Runtime, key: KeyRecord) -> dict[str, Any]:
    now = rt.key_store.now_ms()
    counters = await rt.key_store.counters_for(
        f"key:{key.id}", [(c.counter, window_start(c.window, now)) for c in KEY_CAPS]
    )
    usage: dict[str, Any] = {}
    for cap in KEY_CAPS:  # a usage entry is named after its counter
        limit = key.policy.get(cap.field)
        if limit is None:
            continue
        c, window, money = counters[cap.counter], cap.window, cap.is_usd
        usage[cap.counter] = {
            "limit": to_json_number(limit) if money else limit,
            "used": to_json_number(c.used) if money else c.used,
            "reserved": to_json_number(c.reserved) if money else c.reserved,
            "resets_at": rfc3339(r) if (r := resets_at(window, c.window_start)) is not None else None,
        }
    return {
        "id": key.id,
        "object": "vault_key",
        "vendor": key.vendor,
        "credential": key.credential,
        "credential_generation": key.credential_gen,
        "label": key.label,
        "metadata": key.metadata,
        "status": status_of(key, now),
        "created_at": rfc3339(key.created_at),
        "expires_at": rfc3339(key.expires_at),
        "revoked_at": rfc3339(key.revoked_at) if key.revoked_at else None,
        "revoke_reason": key.revoke_reason,
        "issued_by": key.issued_by,
        "policy": render_policy(key.policy, key_models(rt.vendor_specs).fields),
        "usage": usage,
        # What the key's caps count over its life, settled or still held (a Twilio send awaiting
        # its price, an outcome unknown): the same money `keybrake spend` counts for the key, for
        # every vendor alike (a settled-only figure read 0 for every unreconciled Twilio send).
        "spent_usd": to_json_number(counters["total_usd"].used + counters["total_usd"].reserved),
    }


async def patch(rt: Runtime, key_id: str, patch_body: Any) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) over label, metadata, expiry and policy (field by field).

    Returns the key as `render` does plus `warnings`: the texts issuance gives for the policy the key
    now has (no USD cap, no allowed_endpoints). Raises ApiError: 400 (not an object), 404, 409 (not
    active, or changed meanwhile), 422 (a field)."""
    if not isinstance(patch_body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object (a merge patch)")
    for name in ("vendor", "credential"):
        if name in patch_body:
            raise validation(f"{name} cannot change; issue a new key", name)
    allowed = {"label", "metadata", "policy", "expires_in", "expires_at"}
    for name in patch_body:
        if name not in allowed:
            raise validation(f"unknown field {name!r}", name)
    key = await get_record(rt, key_id)
    if status_of(key, rt.key_store.now_ms()) != "active":
        raise conflict(f"key {key_id} is {status_of(key, rt.key_store.now_ms())} and cannot be changed")
    current: dict[str, Any] = {
        "label": key.label,
        "metadata": copy.deepcopy(key.metadata),
        "policy": _policy_as_input(key.policy),
    }
    merged = _merge(current, {k: v for k, v in patch_body.items() if k in ("label", "metadata", "policy")})
    try:
        valid = key_models(rt.vendor_specs).key_patch_in.model_validate(merged)
    except ValidationError as exc:
        msg, field = pydantic_field(exc)
        raise validation(msg, field) from None
    policy = valid.policy.to_store()
    warnings = _check_policy_fields(rt, key.vendor, policy)
    expires_at = key.expires_at
    if "expires_in" in patch_body or "expires_at" in patch_body:
        expires_at = _expiry(rt, key.created_at, patch_body.get("expires_in"), patch_body.get("expires_at"))
    ok = await rt.key_store.update_key(
        key.id,
        key.policy_version,
        label=valid.label,
        metadata=valid.metadata or {},
        policy=policy,
        expires_at=expires_at,
    )
    if not ok:
        raise conflict(f"key {key_id} changed or was revoked during the update; read it and try again")
    out = await render(rt, await get_record(rt, key_id))
    out["warnings"] = warnings
    return out


def _policy_as_input(policy: dict[str, Any]) -> dict[str, Any]:
    """Stored policy → API input form (money back to dollar strings) for merging."""
    out = copy.deepcopy(policy)
    for name in USD_FIELDS:
        if name in out:
            out[name] = str(to_json_number(out[name]))
    return out


def _merge(target: Any, patch_doc: Any) -> Any:
    if not isinstance(patch_doc, dict):
        return patch_doc
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch_doc.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge(result.get(k), v)
    return result


async def revoke(rt: Runtime, key_id: str, reason: str | None) -> dict[str, Any]:
    if reason is not None and len(reason) > 500:
        raise validation("at most 500 characters", "reason")
    await get_record(rt, key_id)
    key = await rt.key_store.revoke_key(key_id, reason)
    assert key is not None
    return await render(rt, key)


def unknown_vendor(rt: Runtime, vendor: str) -> ApiError:
    """422 naming `vendor` and the vendors `rt` serves (the answer to a vendor it does not serve)."""
    return validation(f"unknown vendor {vendor!r}; known: {', '.join(sorted(rt.vendors))}", "vendor")


async def bulk_revoke(rt: Runtime, body: BulkRevokeIn) -> dict[str, Any]:
    """Revoke every active key matching all of `body`'s filters: {"object": "revocation", "revoked": n,
    "revoked_at": RFC 3339}. Raises ApiError 422 when no filter is given, or when `vendor` is not a
    vendor `rt` serves or `credential` names no credential (a typo would otherwise revoke nothing
    and answer 0); a `label_prefix` matching no key is a valid 0."""
    await _check_bulk(rt, body)
    n, at = await rt.key_store.revoke_keys(
        label_prefix=body.label_prefix, vendor=body.vendor, credential=body.credential, reason=body.reason
    )
    return {"object": "revocation", "revoked": n, "revoked_at": rfc3339(at)}


async def bulk_revoke_preview(rt: Runtime, body: BulkRevokeIn, limit: int = 20) -> dict[str, Any]:
    """What `bulk_revoke` with `body` would revoke now, changing nothing: {"would_revoke": n,
    "keys": the newest `limit` of them as `render` gives them}. The same filters and the same
    refusals (ApiError 422) as `bulk_revoke`; the keys counted are the ones it revokes (status
    active, an expired key not yet revoked included)."""
    await _check_bulk(rt, body)
    n, first = await rt.key_store.revocable_keys(
        label_prefix=body.label_prefix, vendor=body.vendor, credential=body.credential, limit=limit
    )
    return {"would_revoke": n, "keys": [await render(rt, k) for k in first]}


async def _check_bulk(rt: Runtime, body: BulkRevokeIn) -> None:
    if not body.all and body.label_prefix is None and body.vendor is None and body.credential is None:
        raise validation("give at least one of label_prefix, vendor, credential, or all=true", "label_prefix")
    if body.vendor is not None and body.vendor not in rt.vendors:
        raise unknown_vendor(rt, body.vendor)
    if body.credential is not None:
        if not any(c.name == body.credential for c in await rt.credential_store.list_credentials()):
            raise validation(f"no credential named {body.credential!r}", "credential")


async def list_keys(rt: Runtime, q: KeyQuery) -> tuple[list[dict[str, Any]], str | None]:
    rows = await rt.key_store.list_keys(KeyQuery(**{**q.__dict__, "limit": q.limit + 1}))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    cursor = f"{rows[-1].created_at}:{rows[-1].id}" if more and rows else None
    return [await render(rt, k) for k in rows], cursor
