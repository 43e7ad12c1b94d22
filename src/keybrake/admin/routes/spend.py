"""`/v1/spend`: who spent what, grouped (docs/api.md, spend)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from keybrake.admin import spend as spend_ops
from keybrake.admin.audit import parse_time
from keybrake.admin.routes.common import Admin, Principal, Rt, errors
from keybrake.admin.schemas import SpendReport
from keybrake.admin.wire import KJSON, query_params
from keybrake.runtime import Runtime

router = APIRouter(prefix="/v1/spend", tags=["spend"])
_PARAMS = ("group_by", "since", "until", "label_prefix", "vendor", "timezone")


@router.get("", response_model=SpendReport, responses=errors())
async def get_spend(
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    group_by: str = Query("key", description=spend_ops.GROUPS),
    since: str | None = Query(None, description="required: RFC 3339 or Unix seconds, inclusive"),
    until: str | None = Query(None, description="RFC 3339 or Unix seconds, exclusive; default now"),
    label_prefix: str | None = None,
    vendor: str | None = None,
    timezone: str = Query("UTC", description="IANA time zone of day and hour groups"),
) -> Response:
    """Totals per group over at most 366 days: the page envelope plus `group_by` and `timezone`."""
    query_params(request, _PARAMS)
    report = await spend_ops.spend(
        rt,
        group_by=group_by,
        since=parse_time(since, "since") if since is not None else None,
        until=parse_time(until, "until") if until is not None else None,
        label_prefix=label_prefix,
        vendor=vendor,
        timezone=timezone,
    )
    return KJSON(report)
