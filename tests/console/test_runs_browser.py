"""The 2 a.m. reconstruction in Chromium: an agent run's Stripe SDK calls through the proxy, one of
them denied, found from the Runs page, shown in order with the denial's reason, and exported."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.console.conftest import Watched, axe_serious, shoot
from tests.harness import KeybrakeThread
from tests.stripe_sdk import client

RUN = "run-2am-7f3c"


def _run_calls(kb: KeybrakeThread) -> list[str]:
    """The run's calls (one denied: refunds are not in its allowed_endpoints) and one call of
    another run; the run's endpoints in the order made."""
    policy = {
        "daily_usd_cap": 100,
        "allowed_endpoints": ["POST /v1/customers", "POST /v1/payment_intents", "GET /v1/customers"],
    }
    key = kb.issue(policy, label="billing:agent", metadata={"agent_run_id": RUN})
    other = kb.issue({"daily_usd_cap": 10}, label="support:agent", metadata={"agent_run_id": "run-other"})
    sc = client(kb, key)
    customer = sc.v1.customers.create({"email": "night@example.com"})
    sc.v1.payment_intents.create(
        {"amount": 1200, "currency": "usd", "customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    with pytest.raises(stripe.PermissionError):
        sc.v1.refunds.create({"payment_intent": "pi_123", "amount": 500})
    sc.v1.customers.list({"limit": 2})
    client(kb, other).v1.customers.list({"limit": 1})
    return ["POST /v1/customers", "POST /v1/payment_intents", "POST /v1/refunds", "GET /v1/customers"]


def test_a_run_is_reconstructed_in_order_and_exported(web: Watched, ckb: KeybrakeThread, tmp_path: Path) -> None:
    want = _run_calls(ckb)
    page: Any = web.page
    page.get_by_role("link", name="Runs").click()
    page.wait_for_url(f"{ckb.admin_url}/console/runs")
    assert page.get_by_role("link", name=RUN).is_visible()  # among the recent runs
    assert axe_serious(page) == []
    shoot(page, "runs")
    page.get_by_label("Agent run id").fill(RUN)
    page.get_by_role("button", name="Open timeline").click()
    page.wait_for_url(f"{ckb.admin_url}/console/runs/{RUN}")
    table = page.get_by_role("table")
    rows = table.locator("tbody tr")
    assert rows.count() == 4
    cells = [rows.nth(i).locator("td") for i in range(4)]
    assert [f"{c.nth(2).inner_text()} {c.nth(3).inner_text()}" for c in cells] == want
    denied = rows.nth(2)
    assert denied.locator("td").nth(4).inner_text() == "denied_endpoint_not_allowed"
    assert "not in this key's allowed_endpoints" in denied.locator("td").nth(5).inner_text()
    assert "run-other" not in page.content()
    cards = page.locator(".card")
    assert [cards.nth(i).locator(".big").inner_text() for i in range(3)] == ["4", "3", "1"]
    assert axe_serious(page) == []
    shoot(page, "run-timeline")
    with page.expect_download() as got:
        page.get_by_role("link", name="Download CSV").click()
    download = got.value
    assert download.suggested_filename == f"keybrake-run-{RUN}.csv"
    table_rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [f"{r['method']} {r['path']}" for r in table_rows] == want
    assert {r["agent_run_id"] for r in table_rows} == {RUN}
    assert web.errors == []


def test_audit_search_in_the_browser(web: Watched, ckb: KeybrakeThread) -> None:
    _run_calls(ckb)
    page: Any = web.page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Audit", exact=True).click()
    page.wait_for_url(f"{ckb.admin_url}/console/audit")
    assert page.locator("tbody tr").count() == 5
    page.get_by_label("Verdict").select_option("denied")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/audit?*verdict=denied*")
    assert page.locator("tbody tr").count() == 1
    assert "endpoint_not_allowed" in page.locator("tbody tr").inner_text()
    assert axe_serious(page) == []
    page.get_by_role("link", name="Clear filters").click()
    page.wait_for_selector("tbody tr")
    assert axe_serious(page) == []
    shoot(page, "audit")
    assert web.errors == []
    # a malformed time: the page answers 400 with the API's message, the form keeps what was typed
    page.get_by_label("Since").fill("last tuesday")
    page.get_by_role("button", name="Search").click()
    assert "since:" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Since").input_value() == "last tuesday"
    assert axe_serious(page) == []
    # Chromium reports the 400 document itself as a failed resource load; nothing else failed
    assert web.errors == ["console: Failed to load resource: the server responded with a status of 400 (Bad Request)"]
