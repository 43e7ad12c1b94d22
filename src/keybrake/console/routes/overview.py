"""Overview (`/console`): what an operator looks at first — today's and this month's spend per
vendor, the refusals of the last 24 hours by code, keys near a cap, recent alert deliveries and
pending approvals. Every read is bounded: spend over today's and this month's audit id ranges,
refusals on their own partial index, near-cap counters on the counters' window index, 10
deliveries, at most PENDING_SHOWN + 1 approvals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import approvals, keys
from keybrake.console.spend_days import Cell
from keybrake.console.spend_days import by_vendor as spend_by_vendor
from keybrake.console.web import Operator, operator, page, runtime
from keybrake.core.caps import KEY_CAPS
from keybrake.core.timefmt import DAY_MS, utc_day_start
from keybrake.core.windows import window_start
from keybrake.runtime import Runtime

router = APIRouter(include_in_schema=False)

NEAR_PCT = 80  # a key is "near a cap" at this share of it
NEAR_SHOWN = 20  # at most this many near-cap keys on the page
ALERTS_SHOWN = 10
PENDING_SHOWN = 5  # the latest pending approvals listed; the count is exact up to PENDING_COUNTED
PENDING_COUNTED = 100


def month_start(now_ms: int) -> int:
    """The start (Unix ms) of the UTC calendar month holding `now_ms`."""
    d = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp() * 1000)


def vendor_spend(cells: list[Cell], since: int) -> list[dict[str, Any]]:
    """The spend report by vendor since `since` (a UTC day start, Unix ms), as GET /v1/spend answers it."""
    rows: list[dict[str, Any]] = spend_by_vendor(cells, since)["data"]
    return rows


async def refusals(rt: Runtime, since: int) -> dict[str, Any]:
    """Cap hits and denials since `since`: counts by code (most first) and the two totals.
    Upstream failures (the vendor unreachable or timing out) are not refusals of policy: left out."""
    rows = await rt.audit_store.refusals_since(since)
    by_code: dict[str, list[Any]] = {}
    cap_hits = denials = 0
    for verdict, code, n in rows:
        if verdict == "cap_exceeded":
            cap_hits += n
        elif verdict.startswith("denied_"):
            denials += n
        else:
            continue
        entry = by_code.setdefault(code, [code, verdict == "cap_exceeded", 0])
        entry[2] += n
    codes = [{"code": c, "cap_hit": hit, "count": n} for c, hit, n in by_code.values()]
    codes.sort(key=lambda d: (-d["count"], d["code"]))
    return {"cap_hits": cap_hits, "denials": denials, "codes": codes}


def _near_caps_of(key: dict[str, Any]) -> list[dict[str, Any]]:
    """The caps of a rendered key (`keys.render`) at NEAR_PCT % or more: used counts what is reserved."""
    out = []
    for cap in KEY_CAPS:
        u = key["usage"].get(cap.counter)
        if u is None or Decimal(str(u["limit"])) <= 0:
            continue
        used, limit = Decimal(str(u["used"])) + Decimal(str(u["reserved"])), Decimal(str(u["limit"]))
        if used * 100 >= limit * NEAR_PCT:
            out.append({"cap": cap.field, "used": used, "limit": limit, "is_usd": cap.is_usd,
                        "pct": int(used * 100 / limit), "resets_at": u["resets_at"]})  # fmt: skip
    return out


async def near_caps(rt: Runtime, now: int) -> list[dict[str, Any]]:
    """Active keys at NEAR_PCT % or more of a cap, fullest first, at most NEAR_SHOWN: each key as
    `keys.render` shows it, with `near` (its caps at that share, by today's policy)."""
    counters = [(c.counter, window_start(c.window, now)) for c in KEY_CAPS]
    rows = await rt.key_store.keys_near_caps(counters, NEAR_PCT, now, NEAR_SHOWN * 2)
    seen: list[str] = []
    for r in rows:
        key_id = r.scope.removeprefix("key:")
        if key_id not in seen:
            seen.append(key_id)
    out = []
    for key_id in seen[:NEAR_SHOWN]:
        record = await rt.key_store.get_key(key_id)
        if record is None:
            continue
        key = await keys.render(rt, record)
        near = _near_caps_of(key)  # the policy may have changed since the counter's last check
        if near and key["status"] == "active":
            out.append({**key, "near": near})
    return out


async def deliveries(rt: Runtime) -> list[dict[str, Any]]:
    """The latest ALERTS_SHOWN alert deliveries, newest first, with their destination's type and id
    (never its URL, a Slack webhook's is a secret, nor the body: an approval's carries decision links)."""
    names = {d.id: f"{d.type} {d.id}" for d in await rt.alert_store.list_alerts()}
    rows = await rt.alert_store.list_deliveries(ALERTS_SHOWN)
    out = []
    for d in rows:
        where = names.get(d.destination_id, d.destination_id)
        out.append({"type": d.event_type, "state": d.state, "attempts": d.attempts, "created_at": d.created_at,
                    "destination": where, "status": d.last_status})  # fmt: skip
    return out


def by_vendor(today: list[dict[str, Any]], month: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per vendor with spend this month (`vendor`, `today` and `month`: the report rows,
    today's None without spend today), the month's biggest spender first."""
    todays = {r["group"]: r for r in today}
    out = [{"vendor": r["group"], "today": todays.pop(r["group"], None), "month": r} for r in month]
    # a row of today is in this month's report too, except across midnight of a month's first day
    out += [{"vendor": v, "today": r, "month": r} for v, r in todays.items()]
    return out


@router.get("/console")
async def overview(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """The overview page."""
    rt = runtime(request)
    now = rt.audit_store.now_ms()
    today, month = utc_day_start(now), month_start(now)
    cells = await request.app.state.spend_days.cells(rt, month)
    pending, more = await approvals.list_approvals(rt, state="pending", key_id=None, limit=PENDING_COUNTED, cursor=None)
    return page(
        request,
        "overview.html",
        op,
        title="Overview",
        now=now,
        today=today,
        month=month,
        vendors=by_vendor(vendor_spend(cells, today), vendor_spend(cells, month)),
        refused=await refusals(rt, now - DAY_MS),
        since_s=(now - DAY_MS) // 1000,  # the audit log's links: the same 24 hours (Unix seconds)
        near=await near_caps(rt, now),
        near_pct=NEAR_PCT,
        near_shown=NEAR_SHOWN,
        alerts=await deliveries(rt),
        pending=pending[:PENDING_SHOWN],
        pending_count=len(pending),
        pending_more=more is not None,
    )
