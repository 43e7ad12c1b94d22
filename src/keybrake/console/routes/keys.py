"""Keys (`/console/keys`): the fleet with its caps, one key's revocation and the bulk revocation
(the kill switch), each behind a confirmation naming what it stops.

Reads and changes go through `keybrake.admin.keys` like the API's `/v1/keys`: the same filters,
validation, refusals and alert events (key.revoked).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from keybrake.admin import keys
from keybrake.admin.audit import decode_cursor, encode_cursor
from keybrake.admin.errors import ApiError
from keybrake.admin.models import BulkRevokeIn
from keybrake.console.web import Form, Operator, notice_of, operator, page, posted, runtime, see_other
from keybrake.core.caps import KEY_CAPS
from keybrake.jobs.alerts import Alerts
from keybrake.logs import event
from keybrake.store.base import KeyQuery

router = APIRouter(include_in_schema=False)
log = logging.getLogger("keybrake.console")
PAGE_SIZE = 50
PREVIEW = 20  # keys a bulk confirmation lists by name
STATUSES = ("active", "expired", "revoked")
_MONEY_COUNTERS = frozenset(c.counter for c in KEY_CAPS if c.is_usd)
CAP_NAMES = {
    "daily_usd": "USD today",
    "total_usd": "USD in total",
    "hourly_requests": "Requests this hour",
    "daily_sends": "Sends today",
    "daily_graphql_points": "GraphQL points today",
}


def bars(key: dict[str, Any]) -> list[dict[str, Any]]:
    """One bar per cap of a rendered key (`keys.render`): name, counter, used, limit, reserved
    (numbers for the <meter>; money in USD), `money` (format as USD), resets_at (RFC 3339 or None)."""
    out = []
    for counter, u in key["usage"].items():
        out.append(
            {
                "counter": counter,
                "name": CAP_NAMES.get(counter, counter),
                "money": counter in _MONEY_COUNTERS,
                "used": u["used"],
                "limit": u["limit"],
                "reserved": u["reserved"],
                "resets_at": u["resets_at"],
            }
        )
    return out


def alerter(request: Request) -> Alerts | None:
    """The app's alert sender (None when the app has none), as the API's revocations use it."""
    sender: Alerts | None = getattr(request.app.state, "alerts", None)
    return sender


@router.get("/console/keys")
async def keys_page(
    request: Request,
    op: Annotated[Operator, Depends(operator)],
    label_prefix: str = "",
    vendor: str = "",
    status: str = "",
    cursor: str = "",
) -> Response:
    """The fleet, newest first, 50 a page: filters by label prefix, vendor and status."""
    rt = runtime(request)
    filters = {"label_prefix": label_prefix, "vendor": vendor, "status": status}
    if status and status not in STATUSES:
        raise ApiError(400, "invalid_request", "status must be active, expired or revoked", "status")
    query = KeyQuery(
        label_prefix=label_prefix or None,
        vendor=vendor or None,
        status=status or None,
        cursor=decode_cursor(cursor) if cursor else None,
        limit=PAGE_SIZE,
    )
    rows, raw_next = await keys.list_keys(rt, query)
    next_cursor = ""
    if raw_next:
        created, key_id = raw_next.split(":", 1)
        next_cursor = encode_cursor(int(created), key_id)
    last = await rt.audit_store.last_calls([k["id"] for k in rows])
    return page(request, "keys.html", op, title="Keys", keys=rows, bars=bars, last=last, filters=filters,
                vendors=sorted(rt.vendors), statuses=STATUSES, next_cursor=next_cursor, first_page=not cursor,
                bulk={"label_prefix": "", "vendor": "", "reason": ""},
                notice=notice_of(request, op))  # fmt: skip


def _back(key_id: str, value: str) -> str:
    """Where a revocation returns: the key's page when it came from there, else the list."""
    detail = f"/console/keys/{key_id}"
    return detail if value == detail else "/console/keys"


@router.get("/console/keys/{key_id}/revoke")
async def revoke_confirm(
    request: Request, key_id: str, op: Annotated[Operator, Depends(operator)], back: str = ""
) -> Response:
    """The confirmation of one key's revocation: which key, and what it stops."""
    rt = runtime(request)
    key = await keys.render(rt, await keys.get_record(rt, key_id))
    return page(request, "keys_revoke.html", op, title="Revoke key", key=key, back=_back(key_id, back), reason="")


@router.post("/console/keys/{key_id}/revoke")
async def revoke(request: Request, key_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Revoke one key when `confirm=yes` (with an optional `reason`); else show the confirmation."""
    rt = runtime(request)
    back, reason = _back(key_id, form.get("back")), form.get("reason")
    if form.get("confirm") != "yes":
        key = await keys.render(rt, await keys.get_record(rt, key_id))
        return page(request, "keys_revoke.html", form.op, title="Revoke key", key=key, back=back, reason=reason)
    try:
        out = await keys.revoke(rt, key_id, reason or None)
    except ApiError as exc:
        if exc.status != 422:
            raise
        key = await keys.render(rt, await keys.get_record(rt, key_id))
        return page(request, "keys_revoke.html", form.op, status=422, title="Revoke key", key=key, back=back,
                    reason=reason, problem=f"{exc.field or 'reason'}: {exc.message}")  # fmt: skip
    event(log, "key revoked", key_id=key_id, by=form.op.principal.id)
    sender = alerter(request)
    if sender is not None:
        sender.key_revoked(await keys.get_record(rt, key_id))
    name = f"{key_id} ({out['label']})" if out["label"] else key_id
    return see_other(back, form.op, notice=f"Key {name} is revoked: its next call is refused.")


def _bulk_body(form: Form) -> tuple[dict[str, str], BulkRevokeIn | None, str]:
    """The bulk form's fields as sent, the API body they make (None when refused) and the refusal."""
    sent = {"label_prefix": form.fields.get("label_prefix", ""), "vendor": form.get("vendor"),
            "reason": form.get("reason")}  # fmt: skip
    if not sent["label_prefix"].strip() and not sent["vendor"]:
        why = "Give a label prefix or a vendor: an empty filter would revoke every key. Nothing was revoked."
        return sent, None, why
    try:
        body = BulkRevokeIn(
            label_prefix=sent["label_prefix"] or None, vendor=sent["vendor"] or None, reason=sent["reason"] or None
        )
    except ValidationError as exc:
        msg, field = keys.pydantic_field(exc)
        return sent, None, f"{field}: {msg}" if field else msg
    return sent, body, ""


@router.post("/console/keys/bulk-revoke")
async def bulk_revoke(request: Request, form: Annotated[Form, Depends(posted)]) -> Response:
    """Bulk revocation by label prefix and/or vendor: without `confirm=yes`, the confirmation with
    how many active keys it stops (and the first 20 of them); with it, the revocation."""
    rt = runtime(request)
    sent, body, why = _bulk_body(form)
    ctx: dict[str, Any] = {"title": "Revoke keys in bulk", "bulk": sent, "vendors": sorted(rt.vendors)}
    if body is None:
        return page(request, "keys_bulk.html", form.op, status=422, preview=None, problem=why, **ctx)
    try:
        if form.get("confirm") != "yes":
            preview = await keys.bulk_revoke_preview(rt, body, PREVIEW)
            return page(request, "keys_bulk.html", form.op, preview=preview, bars=bars, **ctx)
        out = await keys.bulk_revoke(rt, body)
    except ApiError as exc:
        if exc.status != 422:
            raise
        problem = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return page(request, "keys_bulk.html", form.op, status=422, preview=None, problem=problem, **ctx)
    n = out["revoked"]
    event(log, "keys revoked in bulk", count=n, by=form.op.principal.id)
    sender = alerter(request)
    if sender is not None and n:
        sender.soon(sender.scan_revoked())  # one key.revoked per key revoked, now
    shown = form.get("expected")
    note = f"Revoked {n} key{'s' if n != 1 else ''}: their next calls are refused."
    if shown.isdigit() and int(shown) != n:
        note += f" The confirmation showed {shown}: keys were issued, revoked or changed meanwhile."
    return see_other("/console/keys", form.op, notice=note)
