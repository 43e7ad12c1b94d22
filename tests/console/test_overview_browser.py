"""The overview and spend pages in a real browser (Debian's Chromium): what they show after real
Stripe activity, the range selector, axe-core, screenshots (wide and phone-sized)."""

from __future__ import annotations

import re
from typing import Any

from tests.approval_holds import decide, hold
from tests.console.conftest import Watched, axe_serious, shoot
from tests.console.overview_seed import seed
from tests.harness import KeybrakeThread


def test_overview_and_spend_in_a_browser(web: Watched, ckb: KeybrakeThread) -> None:
    seeded = seed(ckb)
    _key, call, approval = hold(ckb)
    try:
        _overview(web, ckb, seeded.near["id"], approval["id"])
        _spend(web)
    finally:
        assert decide(ckb, approval["id"], "deny", {"reason": "not tonight"}).status_code == 200
        call.done()
    assert web.errors == []


def _overview(w: Watched, kb: KeybrakeThread, near_id: str, approval_id: str) -> None:
    p: Any = w.page
    p.goto(f"{kb.admin_url}/console")
    for name in ("Spend", "Cap hits and denials, last 24 hours", "Keys near a cap", "Recent alerts",
                 "Pending approvals"):  # fmt: skip
        assert p.get_by_role("heading", name=name, level=2).is_visible(), name
    card = p.locator(".spend-card").filter(has=p.get_by_role("heading", name="stripe"))
    assert "$27.00 today" in card.inner_text() and "$27.00 this month" in card.inner_text()
    codes = p.get_by_role("table").filter(has_text="Refused calls by code")
    assert codes.get_by_role("row", name="spend_cap_exceeded cap hit 1").is_visible()
    assert codes.get_by_role("row", name="endpoint_not_allowed denial 1").is_visible()
    meter = p.get_by_role("meter", name=f"daily_usd_cap of {near_id}")
    assert meter.get_attribute("value") == "20" and meter.get_attribute("max") == "25"
    assert p.get_by_role("link", name=approval_id).get_attribute("href") == f"/console/approvals#apr-{approval_id}"
    denials = p.get_by_role("link", name="Denials in the audit log").get_attribute("href")
    assert re.fullmatch(r"/console/audit\?verdict=denied&since=\d+", denials)
    code = codes.get_by_role("link", name="spend_cap_exceeded").get_attribute("href")
    assert code == denials.replace("verdict=denied", "error_code=spend_cap_exceeded")
    assert axe_serious(p) == []
    shoot(p, "overview")
    p.set_viewport_size({"width": 390, "height": 844})
    assert axe_serious(p) == []
    shoot(p, "overview-narrow")
    p.set_viewport_size({"width": 1280, "height": 900})


def _spend(w: Watched) -> None:
    p: Any = w.page
    p.get_by_role("navigation", name="Console").get_by_role("link", name="Spend").click()
    p.wait_for_url("**/console/spend")
    chart = p.get_by_role("img", name="stripe charged per day, last 30 days (UTC)")
    assert chart.is_visible() and chart.locator("rect.bar").count() == 1
    table = p.locator("#table-stripe")
    assert table.get_by_role("cell", name="$27.00").count() == 2  # charged and net
    assert p.get_by_label("Range").input_value() == "30"
    assert axe_serious(p) == []
    shoot(p, "spend")
    p.get_by_label("Range").select_option("7")
    p.get_by_role("button", name="Show spend").click()
    p.wait_for_url("**/console/spend?days=7&segments=1")
    assert p.get_by_role("img", name="stripe charged per day, last 7 days (UTC)").locator("rect.bar").count() == 1
    assert p.get_by_label("Range").input_value() == "7"
