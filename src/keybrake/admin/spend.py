"""Who spent what: audit totals grouped by key, label prefix, vendor, day or hour (docs/api.md, alerts).

The store sums in SQL (per key, label, vendor, or 15-minute bucket); label segments and local
days and hours are folded here, so a time zone with a 30- or 45-minute offset still groups right.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from keybrake.admin.errors import ApiError
from keybrake.core.money import to_json_number
from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import zone
from keybrake.runtime import Runtime
from keybrake.store.base import SPEND_BUCKET_MS, SpendRow

# GET /v1/spend covers at most this many days (`since` is required): an unbounded report would
# scan the whole audit table. `keybrake spend` on the host may still total everything.
MAX_SPAN_DAYS = 366
_LABEL_N = re.compile(r"^label:([1-9][0-9]?)$")
GROUPS = "key | label:N | vendor | day | hour"


def _fold(rows: list[SpendRow], by: str, tz: str) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = {}
    m = _LABEL_N.match(by)
    for r in rows:
        if m is not None:
            key: Any = ":".join(str(r.group).split(":")[: int(m.group(1))]) if r.group is not None else None
        elif by in ("day", "hour"):
            start = dt.datetime.fromtimestamp(int(r.group or 0) * SPEND_BUCKET_MS / 1000, zone(tz))
            key = start.date().isoformat() if by == "day" else start.replace(minute=0, second=0).isoformat()
        else:
            key = r.group
        acc = out.setdefault(key, [0, 0, 0, 0, 0])
        for i, v in enumerate((r.charged, r.refunded, r.requests, r.denied, r.cap_hits)):
            acc[i] += v
    return out


def _check_range(since: int | None, until: int | None, now_ms: int) -> None:
    if since is None:
        raise ApiError(
            400,
            "invalid_request",
            f"since is required: a spend report covers at most {MAX_SPAN_DAYS} days (since ≤ t < until, default"
            " until = now); for all-time totals run `keybrake spend` on the host",
            "since",
        )
    if until is not None and until < since:
        raise ApiError(400, "invalid_request", "until must not be before since (since ≤ t < until)", "until")
    end = until if until is not None else now_ms
    if end - since > MAX_SPAN_DAYS * DAY_MS:
        raise ApiError(
            400, "invalid_request", f"since: the range may span at most {MAX_SPAN_DAYS} days; page by time", "since"
        )


async def spend(
    rt: Runtime,
    *,
    group_by: str,
    since: int | None,
    until: int | None,
    label_prefix: str | None,
    vendor: str | None,
    timezone: str,
    bounded: bool = True,
) -> dict[str, Any]:
    """Totals per group (money in µUSD summed, rendered as USD numbers).

    `since`/`until` are Unix ms. With `bounded` (the HTTP API), `since` is required and the
    range may span at most MAX_SPAN_DAYS; raises ApiError 400 naming the field otherwise.
    """
    if group_by in ("key", "vendor"):
        source = group_by
    elif _LABEL_N.match(group_by):
        source = "label"
    elif group_by in ("day", "hour"):
        source = "bucket"
    else:
        raise ApiError(400, "invalid_request", f"group_by must be one of {GROUPS}", "group_by")
    if bounded:
        _check_range(since, until, rt.audit_store.now_ms())
    try:
        zone(timezone)
    except (KeyError, ValueError):
        raise ApiError(400, "invalid_request", f"{timezone!r} is not an IANA time zone", "timezone") from None
    rows = await rt.audit_store.spend(source, since, until, label_prefix, vendor)
    return report(rows, group_by, timezone)


def report(rows: list[SpendRow], group_by: str, timezone: str) -> dict[str, Any]:
    """The spend report (GET /v1/spend's body) of store totals `rows` grouped `group_by` (already
    checked) in `timezone`: per group charged, refunded, gross and net USD, requests, denied, cap
    hits; time groups in order, others biggest first."""
    folded = _fold(rows, group_by, timezone)
    data = []
    for group, (charged, refunded, requests, denied, cap_hits) in folded.items():
        data.append(
            {
                "group": group,
                "charged_usd": to_json_number(charged),
                "refunded_usd": to_json_number(refunded),
                "gross_usd": to_json_number(charged + refunded),
                "net_usd": to_json_number(charged - refunded),
                "requests": requests,
                "denied": denied,
                "cap_hits": cap_hits,
                "_gross": charged + refunded,
            }
        )
    if group_by in ("day", "hour"):
        data.sort(key=lambda d: str(d["group"]))
    else:
        data.sort(key=lambda d: (-d["_gross"], str(d["group"])))
    for d in data:
        del d["_gross"]
    return {"object": "list", "group_by": group_by, "timezone": timezone, "data": data, "next_cursor": None}
