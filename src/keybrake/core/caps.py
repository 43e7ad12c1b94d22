"""The one table of caps: which policy or budget field caps which counter, over which window.

Every place that turns a cap into a counter (the reservation, a budget's counters, the usage a key
or budget renders, the alert that names a cap) reads this table (docs/api.md, caps and budgets).
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from keybrake.core.windows import Window


@dataclass(frozen=True)
class Cap:
    """One cap. `scope`: "key" (a vault key's policy) or "budget"; `field`: the policy or budget
    field that sets its limit; `counter`: the counter row it is checked against; `is_usd`: the
    counter holds micro-USD (else a count); `counts`: what one request adds to a count counter —
    "request" (every forwarded request), "send" (what the vendor billed: messages, recipients) or
    "points" (the vendor's cost points: a bound reserved, settled to the points its answer reports).
    `vendor_field`: the limit is one of the vendor's own policy fields (`Policy.vendor_data`)."""

    scope: str
    field: str
    counter: str
    window: Window
    is_usd: bool
    counts: str = "request"
    vendor_field: bool = False


KEY_CAPS: tuple[Cap, ...] = (
    Cap("key", "daily_usd_cap", "daily_usd", Window.DAY, True),
    Cap("key", "total_usd_cap", "total_usd", Window.TOTAL, True),
    Cap("key", "max_requests_per_hour", "hourly_requests", Window.HOUR, False),
    Cap("key", "daily_send_cap", "daily_sends", Window.DAY, False, counts="send"),
    # GraphQL cost points (Shopify's `extensions.cost`), a vendor field: docs/sdk-shopify.md.
    Cap("key", "daily_graphql_cost_points", "daily_graphql_points", Window.DAY, False, "points", True),
)
BUDGET_CAPS: tuple[Cap, ...] = (
    Cap("budget", "daily_usd_cap", "daily_usd", Window.DAY, True),
    Cap("budget", "monthly_usd_cap", "monthly_usd", Window.MONTH, True),
    Cap("budget", "total_usd_cap", "total_usd", Window.TOTAL, True),
    Cap("budget", "daily_request_cap", "daily_requests", Window.DAY, False),
)
CAPS: tuple[Cap, ...] = KEY_CAPS + BUDGET_CAPS

# Counters of what the vendor bills: they count only when the vendor accepted the send, unlike
# request counters, which count every forwarded request.
SEND_COUNTERS = frozenset(c.counter for c in CAPS if c.counts == "send")
# Counters of cost points: they settle to what the answer reports (`Settlement.points`), else
# keep what was reserved when the request was forwarded.
POINT_COUNTERS = frozenset(c.counter for c in CAPS if c.counts == "points")
# Counters whose window rolls over in a budget's time zone (a change of zone re-seeds them).
ZONED_BUDGET_COUNTERS = tuple(c.counter for c in BUDGET_CAPS if c.window in (Window.DAY, Window.MONTH))


# (scope, counter) → its cap: how a counter row found in the store is named in an alert.
CAPS_BY_COUNTER = {(c.scope, c.counter): c for c in CAPS}
