"""Money in every event's `data` is a JSON number of US dollars, exact (docs/api.md, alerts)."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import CapHit
from keybrake.core.jsonfmt import dumps
from keybrake.core.windows import Window, resets_at
from keybrake.jobs.alert_format import anomaly_data, threshold_data
from keybrake.store.base import CounterUsage
from tests.harness import examples

DAY_END = resets_at(Window.DAY, 0)  # the counters below start at 0

MICRO = st.integers(0, 10**15)
MONEY_FIELDS = {
    "cap.threshold": ("limit", "used"),  # when unit is "usd"
    "cap.hit": ("limit_usd", "used_usd", "requested_usd"),
    "spend.anomaly": ("spend_usd", "baseline_spend_usd"),
}


def money_of(data: dict[str, object], names: tuple[str, ...]) -> list[tuple[object, str]]:
    """(parsed JSON value, its exact text in the serialised body) of each money field."""
    body = dumps(data).decode()
    parsed = json.loads(body, parse_float=Decimal)
    return [(parsed[n], n) for n in names]


@settings(max_examples=examples(300), deadline=None)
@given(limit=MICRO, used=MICRO, reserved=MICRO, requested=MICRO, base=st.floats(0, 1e15))
def test_every_events_money_is_an_exact_json_number(
    limit: int, used: int, reserved: int, requested: int, base: float
) -> None:
    """Newcomer: cap.threshold had strings ("limit": "100") while cap.hit had numbers."""
    c = CounterUsage("key:vk_x", "daily_usd", 0, used, reserved, max(limit, 1))
    cases = {
        "cap.threshold": (threshold_data(c, "key", "vk_x", "daily_usd_cap", 50, Window.DAY, DAY_END),
                          {"limit": max(limit, 1), "used": used + reserved}),
        "cap.hit": (CapHit("key", "vk_x", "daily_usd_cap", limit, used, requested, None, True).as_json(),
                    {"limit_usd": limit, "used_usd": used, "requested_usd": requested}),
        "spend.anomaly": (anomaly_data("key", "vk_x", ["spend"], 0, used, 5, base, 1.0, 3.0),
                          {"spend_usd": used, "baseline_spend_usd": int(base)}),
    }  # fmt: skip
    for event, (data, micro) in cases.items():
        for value, name in money_of(data, MONEY_FIELDS[event]):
            assert isinstance(value, (int, Decimal)) and not isinstance(value, bool), (event, name, value)
            assert Decimal(value) * 1_000_000 == micro[name], (event, name, value)


def test_a_count_caps_threshold_stays_a_count() -> None:
    c = CounterUsage("key:vk_x", "hourly_requests", 0, 7, 1, 10)
    d = threshold_data(
        c, "key", "vk_x", "max_requests_per_hour", 80, Window.HOUR, resets_at(Window.HOUR, c.window_start)
    )
    assert (d["limit"], d["used"], d["unit"]) == (10, 8, "count")
