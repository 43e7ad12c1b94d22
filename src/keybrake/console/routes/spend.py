"""Spend (`/console/spend`): charged money per vendor per UTC day, and per label segment, over the
last 7, 30 or 90 days, as server-drawn bar charts (`console.charts`) each with a table of the
exact numbers beneath. The numbers are GET /v1/spend's (its report, `admin.spend.report`), made
from one read of the range per (vendor, label, day) (`console.spend_days`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.console.charts import Chart, bar_chart
from keybrake.console.spend_days import Cell, by_day, by_label, by_vendor
from keybrake.console.web import Operator, operator, page, runtime
from keybrake.core.money import MICRO
from keybrake.core.timefmt import DAY_MS, utc_day_start

router = APIRouter(include_in_schema=False)

RANGES = (7, 30, 90)  # days the range selector offers
DEFAULT_DAYS = 30
SEGMENTS = (1, 2, 3)  # label:N groupings offered
DEFAULT_SEGMENTS = 1
LABEL_GROUPS_SHOWN = 20  # label segments charted and listed, biggest first


def micro(value: Any) -> int:
    """A report's USD number as integer µUSD (the charts' unit)."""
    return int((Decimal(str(value)) * MICRO).to_integral_value())


def day_slots(since: int, days: int) -> list[str]:
    """The ISO dates (UTC) of the `days` days from `since` (a UTC midnight, Unix ms)."""
    first = dt.datetime.fromtimestamp(since / 1000, dt.UTC).date()
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def _data(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = report["data"]
    return rows


def vendor_days(cells: list[Cell], since: int, days: int) -> list[dict[str, Any]]:
    """Per vendor with spend in the range (biggest first): `vendor`, `total` (its report row),
    `rows` (the by-day report rows, days without calls left out) and `chart` (a bar per day charged)."""
    slots = day_slots(since, days)
    out = []
    for total in _data(by_vendor(cells)):
        vendor = str(total["group"])
        rows = _data(by_day(cells, vendor))
        charged = {str(r["group"]): micro(r["charged_usd"]) for r in rows}
        chart = bar_chart([(d, charged.get(d, 0)) for d in slots])
        out.append({"vendor": vendor, "total": total, "rows": rows, "chart": chart})
    return out


def label_segments(cells: list[Cell], segments: int) -> tuple[list[dict[str, Any]], Chart, int]:
    """The label:N report (biggest first): its first LABEL_GROUPS_SHOWN rows, their chart, and
    how many groups the report had."""
    rows = _data(by_label(cells, segments))
    shown = rows[:LABEL_GROUPS_SHOWN]
    chart = bar_chart([(_label(r["group"]), micro(r["charged_usd"])) for r in shown])
    return shown, chart, len(rows)


def _label(group: Any) -> str:
    return "(no label)" if group is None else str(group)


def _choice(raw: str | None, allowed: tuple[int, ...], default: int, what: str) -> tuple[int, str]:
    """The chosen value, or the default and a message naming what is allowed."""
    if raw is None or raw == "":
        return default, ""
    if raw.isdigit() and int(raw) in allowed:
        return int(raw), ""
    choices = ", ".join(str(a) for a in allowed)
    return default, f"{what} must be one of {choices}; showing {default}."


@router.get("/console/spend")
async def spend_page(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """The spend page: `days` (7, 30 or 90) and `segments` (label:N, 1–3) from the query string;
    another value is answered 400 with the default's page and a message naming the choices."""
    rt = runtime(request)
    days, bad_days = _choice(request.query_params.get("days"), RANGES, DEFAULT_DAYS, "days")
    segments, bad_seg = _choice(request.query_params.get("segments"), SEGMENTS, DEFAULT_SEGMENTS, "segments")
    now = rt.audit_store.now_ms()
    since = utc_day_start(now) - (days - 1) * DAY_MS
    cells = await request.app.state.spend_days.cells(rt, since)
    labels, label_chart, label_count = label_segments(cells, segments)
    problem = " ".join(m for m in (bad_days, bad_seg) if m)
    return page(
        request,
        "spend.html",
        op,
        status=400 if problem else 200,
        title="Spend",
        problem=problem,
        days=days,
        ranges=RANGES,
        segments=segments,
        segment_choices=SEGMENTS,
        since=since,
        now=now,
        vendors=vendor_days(cells, since, days),
        labels=labels,
        label_chart=label_chart,
        label_count=label_count,
        label_name=_label,
    )
