"""`/v1/alerts`: alert destinations and their deliveries (docs/api.md, alerts)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from keybrake.admin import alerts as alert_ops
from keybrake.admin.audit import decode_cursor, encode_cursor, parse_limit
from keybrake.admin.errors import ApiError
from keybrake.admin.routes.common import Admin, Principal, Rt, errors
from keybrake.admin.schemas import Alert, CreatedAlert, DeletedAlert, Delivery, Page
from keybrake.admin.wire import KJSON, page, query_params
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.post("", status_code=201, response_model=CreatedAlert, responses=errors(413, 422))
async def create_alert(body: alert_ops.AlertIn, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Add a destination; its signing secret is in this answer only."""
    out = await alert_ops.create(rt, body)
    event(log, "alert destination created", alert_id=out["id"], by=who.id)
    return KJSON(out, status_code=201)


@router.get("", response_model=Page[Alert], responses=errors())
async def list_alerts(request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Every destination, in one page."""
    query_params(request, ())
    return page([alert_ops.render(d) for d in await rt.alert_store.list_alerts()])


@router.get("/deliveries", response_model=Page[Delivery], responses=errors())
async def list_deliveries(
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    state: str | None = Query(None, description="pending, delivered or failed"),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
    cursor: str | None = Query(None, description="a previous page's next_cursor"),
) -> Response:
    """Deliveries, newest first, one page."""
    query_params(request, ("limit", "cursor", "state"))
    page_size = parse_limit(limit)
    if state is not None and state not in alert_ops.DELIVERY_STATES:
        raise ApiError(400, "invalid_request", "state must be pending, delivered or failed", "state")
    before = decode_cursor(cursor) if cursor is not None else None
    rows = await rt.alert_store.list_deliveries(page_size + 1, state=state, before=before)
    more, rows = len(rows) > page_size, rows[:page_size]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return page([alert_ops.render_delivery(d) for d in rows], next_cursor)


@router.delete("/{alert_id}", response_model=DeletedAlert, responses=errors(404))
async def delete_alert(alert_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Delete a destination; answers it as it was."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    out = await alert_ops.delete(rt, alert_id)
    event(log, "alert destination deleted", alert_id=alert_id, by=who.id)
    return KJSON(out)
