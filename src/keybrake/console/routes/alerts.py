"""Alerts (`/console/alerts`): alert destinations and their recent deliveries (docs/api.md, alerts).

Destinations are shown as the API renders them (`keybrake.admin.alerts.render`): the URL as its
scheme and host only, since the path of a Slack or webhook URL is itself a secret; the signing
secret is never shown. Adding goes through `keybrake.admin.alerts.create` with the API's model
(`AlertIn`); deleting asks for a confirmation first. Deliveries are listed newest first, one
bounded page at a time (cursor paging), with their retry state.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import alerts as alert_ops
from keybrake.admin.audit import decode_cursor, encode_cursor
from keybrake.admin.errors import ApiError
from keybrake.console.ops_forms import optional, validated
from keybrake.console.web import Form, Operator, notice_of, operator, page, posted, runtime, see_other
from keybrake.jobs.alerts import DEFAULT_THRESHOLDS, EVENTS
from keybrake.logs import event

log = logging.getLogger("keybrake.console")
router = APIRouter(include_in_schema=False)
PATH = "/console/alerts"
DELIVERIES_LIMIT = 50
FIELDS = ("type", "url", "thresholds", "anomaly_factor")


@router.get(PATH)
async def alerts_page(
    request: Request, op: Annotated[Operator, Depends(operator)], state: str = "", cursor: str = ""
) -> Response:
    """Destinations, the form to add one, and one page of deliveries (`state`, `cursor`)."""
    return await _render(request, op, state=state, cursor=cursor, notice=notice_of(request, op))


async def _render(
    request: Request,
    op: Operator,
    *,
    state: str = "",
    cursor: str = "",
    status: int = 200,
    notice: str = "",
    problem: str = "",
    kept: dict[str, str] | None = None,
    events: tuple[str, ...] = (),
) -> Response:
    rt = runtime(request)
    refused = []  # a filter or cursor this page cannot use is said (400), never dropped silently
    if state and state not in alert_ops.DELIVERY_STATES:
        refused.append(f"state must be one of {', '.join(alert_ops.DELIVERY_STATES)}; showing every state.")
        state = ""
    try:
        before = decode_cursor(cursor) if cursor else None
    except ApiError:
        refused.append("cursor is not one this page made; showing the newest deliveries.")
        before = None
    if refused:
        problem, status = " ".join([problem, *refused]).strip(), max(status, 400)
    rows = await rt.alert_store.list_deliveries(DELIVERIES_LIMIT + 1, state=state or None, before=before)
    more, rows = len(rows) > DELIVERIES_LIMIT, rows[:DELIVERIES_LIMIT]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else ""
    form = {name: (kept or {}).get(name, "") for name in FIELDS}
    form["type"] = form["type"] or "webhook"
    form["thresholds"] = form["thresholds"] or ", ".join(str(t) for t in DEFAULT_THRESHOLDS)
    form["anomaly_factor"] = form["anomaly_factor"] or "3"
    return page(
        request,
        "alerts.html",
        op,
        status=status,
        title="Alerts",
        destinations=[alert_ops.render(d) for d in await rt.alert_store.list_alerts()],
        deliveries=[alert_ops.render_delivery(d) for d in rows],
        state=state,
        states=alert_ops.DELIVERY_STATES,
        next_cursor=next_cursor,
        all_events=EVENTS,
        chosen=set(events),
        form=form,
        notice=notice,
        problem=problem,
    )


def alert_doc(form: Form) -> dict[str, Any]:
    """The API's create body (`POST /v1/alerts`) for the form: events from the `event:<name>`
    checkboxes, thresholds from a comma-separated list of percentages."""
    doc: dict[str, Any] = {
        "type": form.get("type"),
        "url": form.get("url"),
        "events": [e for e in EVENTS if form.get(f"event:{e}")],
    }
    thresholds = [t.strip() for t in form.get("thresholds").split(",") if t.strip()]
    if thresholds:
        doc["thresholds"] = [int(t) if t.isdigit() else t for t in thresholds]
    if (factor := optional(form.get("anomaly_factor"))) is not None:
        try:
            doc["anomaly_factor"] = float(factor)
        except ValueError:
            doc["anomaly_factor"] = factor
    return doc


@router.post(PATH)
async def create_alert(request: Request, form: Annotated[Form, Depends(posted)]) -> Response:
    """Add a destination; a refusal re-renders the page with the API's message and the form kept.
    A webhook's signing secret is shown once, on the answer to this POST (like the API's), never
    in a redirect, a later page or a log line."""
    doc = alert_doc(form)
    kept = {name: form.get(name) for name in FIELDS}
    try:
        out = await alert_ops.create(runtime(request), validated(alert_ops.AlertIn, doc))
    except ApiError as exc:
        return await _render(
            request, form.op, status=exc.status, problem=exc.message, kept=kept, events=tuple(doc["events"])
        )
    event(log, "alert destination created", alert_id=out["id"], by=form.op.principal.id)
    warned = " ".join(f"Warning: {w}." for w in out["warnings"])
    notice = f"Added {out['type']} destination {out['id']} ({out['url']}). {warned}".strip()
    if out["type"] == "webhook":
        return page(request, "alerts_created.html", form.op, title="Destination added", notice=notice, dest=out)
    return see_other(PATH, form.op, notice=notice)


@router.post(PATH + "/{alert_id}/delete")
async def delete_alert(request: Request, alert_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Without `confirm=yes`: the confirmation naming the destination. With it: delete it."""
    rt = runtime(request)
    if form.get("confirm") != "yes":
        for dest in await rt.alert_store.list_alerts():
            if dest.id == alert_id:
                shown = alert_ops.render(dest)
                return page(request, "alerts_delete.html", form.op, title="Delete alert destination", dest=shown)
        raise ApiError(404, "not_found", f"alert {alert_id!r} not found")
    out = await alert_ops.delete(rt, alert_id)
    event(log, "alert destination deleted", alert_id=alert_id, by=form.op.principal.id)
    return see_other(PATH, form.op, notice=f"Deleted destination {alert_id} ({out['url']}): it gets no more alerts.")
