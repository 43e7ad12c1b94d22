"""Budgets: caps shared by every key their scope covers (docs/api.md, budgets)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pydantic import ValidationError

from keybrake.admin.errors import ApiError, field_path, not_found, pydantic_message, validation
from keybrake.admin.models import LEAP_SECOND_PREFIX, BudgetIn, BudgetPatchIn
from keybrake.core.caps import BUDGET_CAPS
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.money import to_json_number
from keybrake.core.timefmt import rfc3339
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import BudgetRecord, BudgetStore

log = logging.getLogger("keybrake.admin")

CAPS = tuple(c.field for c in BUDGET_CAPS)
_COUNT_CAPS = frozenset(c.field for c in BUDGET_CAPS if not c.is_usd)


def _require_a_cap(values: dict[str, Any]) -> None:
    if all(values.get(c) is None for c in CAPS):
        raise validation(f"a budget needs at least one of {', '.join(CAPS)}", "daily_usd_cap")


async def create(rt: Runtime, body: BudgetIn) -> dict[str, Any]:
    _require_a_cap(body.model_dump())
    if body.scope == "all":
        kind, value = "all", None
    else:
        kind, value = next((k, v) for k, v in body.scope.model_dump().items() if v is not None)
        if kind == "vendor" and value not in rt.vendors:
            raise validation(f"unknown vendor {value!r}; known: {', '.join(sorted(rt.vendors))}", "scope.vendor")
    await _zone_known(rt, body.timezone)
    now = rt.budget_store.now_ms()
    rec = BudgetRecord(
        id="bud_" + secrets.token_urlsafe(16).replace("-", "a").replace("_", "b")[:22],
        name=body.name,
        scope_kind=kind,
        scope_value=value,
        daily_usd_cap=body.daily_usd_cap,
        monthly_usd_cap=body.monthly_usd_cap,
        total_usd_cap=body.total_usd_cap,
        daily_request_cap=body.daily_request_cap,
        timezone=body.timezone,
        created_at=now,
        updated_at=now,
        approval_above_usd=body.approval_above_usd,
    )
    await rt.budget_store.insert_budget(rec)  # seeded with what covered keys spent in its current windows
    out = await render(rt, rec)
    if kind == "credential" and not any(c.name == value for c in await rt.credential_store.list_credentials()):
        # Like a key's warnings: created (a credential may be added later), but it covers nothing yet.
        out["warnings"] = [f"no credential named {value!r} exists: this budget covers no key until one is added"]
    return out


async def _zone_known(rt: Runtime, tz: str) -> None:
    """400 naming the zone when the database cannot compute windows in it (PostgreSQL's tzdata
    lacks it): refused now rather than every covered key's reservation failing with 503 later."""
    reason = await rt.budget_store.zone_refusal(tz)
    if reason is not None:
        raise validation(f"timezone: the database does not know the time zone {tz!r} ({reason})", "timezone")


async def log_unusable_zones(store: BudgetStore) -> int:
    """At start-up: an ERROR naming every budget whose time zone reservations cannot use (a
    leap-second 'right/' zone, or one the database refuses): every key it covers is refused with
    503 until its timezone is changed (docs/operations.md). Returns how many; a store that does
    not answer is left to the jobs to report."""
    bad = 0
    refused: dict[str, str | None] = {}  # one database question per zone
    try:
        for b in await store.list_budgets():
            if b.timezone not in refused:
                leap = b.timezone.startswith(LEAP_SECOND_PREFIX)
                refused[b.timezone] = "leap-second zone" if leap else await store.zone_refusal(b.timezone)
            reason = refused[b.timezone]
            if reason is not None:
                bad += 1
                event(
                    log,
                    "budget time zone unusable: reservations of covered keys fail (503) until it is changed",
                    logging.ERROR,
                    budget=b.id,
                    name=b.name,
                    timezone=b.timezone,
                    reason=reason,
                )
    except EnforcementUnavailable:
        pass
    return bad


async def get_record(rt: Runtime, budget_id: str) -> BudgetRecord:
    rec = await rt.budget_store.get_budget(budget_id)
    if rec is None:
        raise not_found(f"budget {budget_id!r}")
    return rec


async def patch(rt: Runtime, budget_id: str, doc: Any) -> dict[str, Any]:
    """JSON merge patch over name, caps, approval_above_usd and timezone; `null` removes a cap;
    scope is immutable."""
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object (a merge patch)")
    if "scope" in doc:
        raise validation("scope cannot change; create another budget", "scope")
    current = await get_record(rt, budget_id)
    merged: dict[str, Any] = {"name": current.name, "timezone": current.timezone}
    for cap in CAPS:
        value = getattr(current, cap)
        if value is not None:
            merged[cap] = to_json_number(value) if cap not in _COUNT_CAPS else value
    if current.approval_above_usd is not None:
        merged["approval_above_usd"] = to_json_number(current.approval_above_usd)
    merged.update(doc)
    merged = {k: v for k, v in merged.items() if v is not None}
    try:
        body = BudgetPatchIn.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = field_path(err["loc"]) or None
        msg = pydantic_message(err["msg"])
        raise validation(f"{where}: {msg}" if where else msg, where) from None
    _require_a_cap(body.model_dump())
    await _zone_known(rt, body.timezone)
    rec = BudgetRecord(
        id=current.id,
        name=body.name,
        scope_kind=current.scope_kind,
        scope_value=current.scope_value,
        daily_usd_cap=body.daily_usd_cap,
        monthly_usd_cap=body.monthly_usd_cap,
        total_usd_cap=body.total_usd_cap,
        daily_request_cap=body.daily_request_cap,
        timezone=body.timezone,
        created_at=current.created_at,
        updated_at=rt.budget_store.now_ms(),
        approval_above_usd=body.approval_above_usd,
    )
    # A new time zone replaces the day and month counters with freshly seeded ones (same transaction).
    if not await rt.budget_store.update_budget(rec):
        raise not_found(f"budget {budget_id!r}")
    return await render(rt, rec)


async def delete(rt: Runtime, budget_id: str) -> dict[str, Any]:
    rec = await get_record(rt, budget_id)
    out = await render(rt, rec)
    await rt.budget_store.delete_budget(budget_id)
    out["deleted"] = True
    return out


def scope_json(rec: BudgetRecord) -> Any:
    return "all" if rec.scope_kind == "all" else {rec.scope_kind: rec.scope_value}


async def render(rt: Runtime, rec: BudgetRecord) -> dict[str, Any]:
    now = rt.budget_store.now_ms()
    specs = rec.caps(0)
    # The rows reservations count in: window starts from the engine's one source (PostgreSQL's tzdata).
    bounds = await rt.budget_store.window_bounds(now, [(c.window, c.timezone) for c in specs])
    resets = {c.counter: end for c, (_, end) in zip(specs, bounds, strict=True)}
    counters = await rt.budget_store.counters_for(
        f"budget:{rec.id}", [(c.counter, ws) for c, (ws, _) in zip(specs, bounds, strict=True)]
    )
    usage: dict[str, Any] = {}
    for spec in specs:
        limit = getattr(rec, spec.name)
        if limit is None:
            continue
        c = counters[spec.counter]
        money = spec.is_usd
        reset = resets[spec.counter]
        usage[spec.counter] = {
            "limit": to_json_number(limit) if money else limit,
            "used": to_json_number(c.used) if money else c.used,
            "reserved": to_json_number(c.reserved) if money else c.reserved,
            "resets_at": rfc3339(reset) if reset is not None else None,
        }
    out: dict[str, Any] = {
        "id": rec.id,
        "object": "budget",
        "name": rec.name,
        "scope": scope_json(rec),
        "timezone": rec.timezone,
        "created_at": rfc3339(rec.created_at),
        "updated_at": rfc3339(rec.updated_at),
        "usage": usage,
    }
    for cap in CAPS:
        value = getattr(rec, cap)
        out[cap] = (to_json_number(value) if cap not in _COUNT_CAPS else value) if value is not None else None
    above = rec.approval_above_usd
    out["approval_above_usd"] = to_json_number(above) if above is not None else None
    return out


async def covering_warnings(
    rt: Runtime, label: str | None, vendor: str, credential: str, policy: dict[str, Any]
) -> list[str]:
    """Warnings for a key whose own cap exceeds what a covering budget can ever allow."""
    out = []
    for rec in await rt.budget_store.list_budgets():
        if not rec.covers(label, vendor, credential):
            continue
        ceilings = [c for c in (rec.daily_usd_cap, rec.monthly_usd_cap, rec.total_usd_cap) if c is not None]
        if not ceilings:
            continue
        ceiling = min(ceilings)
        for field in ("daily_usd_cap", "total_usd_cap"):
            mine = policy.get(field)
            if mine is not None and mine > ceiling:
                out.append(
                    f"policy.{field} ({to_json_number(mine)} USD) exceeds what budget {rec.id} ({rec.name!r}) can ever "
                    f"allow ({to_json_number(ceiling)} USD): the budget will refuse first"
                )
        if not any(policy.get(f) is not None for f in ("daily_usd_cap", "total_usd_cap")):
            out.append(f"budget {rec.id} ({rec.name!r}) covers this key: it is capped at {to_json_number(ceiling)} USD")
    return out
