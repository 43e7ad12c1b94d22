"""Budgets, alerts and credentials in Chromium: each page with realistic data, axe-core clean,
no console errors, and a screenshot; a budget created (and refused) through the form, a
destination added, a credential rotated without its secret showing anywhere."""

from __future__ import annotations

from typing import Any

from tests.approval_holds import decide, hold
from tests.console.conftest import Watched, axe_serious, shoot
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, free_port, wait_for
from tests.stripe_sdk import client

NEW_SECRET = "sk_test_BROWSERrotated0123456789abcd"


def test_budgets_create_refused_then_listed_with_meters(web: Watched, ckb: KeybrakeThread) -> None:
    key = ckb.issue({}, label="support:refunds:run-1")
    page = web.page
    page.goto(f"{ckb.admin_url}/console/budgets")
    page.get_by_label("Name").fill("support agents")
    page.get_by_label("Covers").select_option("label_prefix")
    page.get_by_label("Label prefix, vendor or credential").fill("support:")
    page.get_by_label("Daily cap (USD)").fill("-5")
    page.get_by_role("button", name="Create budget").click()
    page.get_by_role("alert").filter(has_text="daily_usd_cap").wait_for()
    assert page.get_by_label("Daily cap (USD)").input_value() == "-5"  # what was typed is kept
    assert page.get_by_label("Name").input_value() == "support agents"
    page.get_by_label("Daily cap (USD)").fill("250")
    page.get_by_label("Monthly cap (USD)").fill("5000")
    page.get_by_label("Daily requests cap").fill("1000")
    page.get_by_role("button", name="Create budget").click()
    page.get_by_role("status").filter(has_text="Created budget support agents").wait_for()
    client(ckb, key).v1.charges.create({"amount": 4000, "currency": "usd", "source": "tok_visa"})
    page.reload()
    table = page.get_by_role("table", name="Budgets (1)")
    assert "$40.00 / $250.00" in table.inner_text() and "1 / 1000" in table.inner_text()
    assert page.get_by_role("meter", name="Daily spend").get_attribute("value") == "40"
    assert axe_serious(page) == []
    shoot(page, "budgets")
    page.get_by_role("button", name="Delete budget support agents").click()
    assert axe_serious(page) == []
    page.get_by_role("button", name="Delete budget support agents").click()
    page.get_by_role("status").filter(has_text="Deleted budget support agents").wait_for()
    assert [e for e in web.errors if "status of 422" not in e] == []  # the refused form's answer is a 422


def test_alerts_destination_and_its_retried_delivery(web: Watched, ckb: KeybrakeThread) -> None:
    page = web.page
    page.goto(f"{ckb.admin_url}/console/alerts")
    page.get_by_label("Kind").select_option("slack")
    page.get_by_label("URL").fill(f"http://127.0.0.1:{free_port()}/services/T0/B0/secretpath")
    page.get_by_label("approval.requested").check()
    page.get_by_label("cap.hit").check()
    page.get_by_role("button", name="Add destination").click()
    page.get_by_role("status").filter(has_text="Added slack destination").wait_for()
    assert "secretpath" not in page.content()
    _, call, apr = hold(ckb)  # an approval.requested delivery to a host where nothing listens

    def retried() -> Any:
        with ckb.admin() as c:
            rows = c.get("/v1/alerts/deliveries").json()["data"]
        return rows and rows[0]["attempts"] >= 1 and rows

    wait_for(retried)
    decide(ckb, apr["id"], "deny", {"reason": "test over"})
    call.done()
    page.reload()
    deliveries = page.get_by_role("table", name="Recent deliveries")
    assert "approval.requested" in deliveries.inner_text()
    assert axe_serious(page) == []
    shoot(page, "alerts")
    assert web.errors == []


def test_credentials_rotate_in_the_browser(web: Watched, ckb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    ckb.issue({})
    ckb.add_credential(fake_stripe.base_url, name="billing-live", secret="rk_test_restrictedKEY12345678")
    page = web.page
    page.goto(f"{ckb.admin_url}/console/credentials")
    assert axe_serious(page) == []
    shoot(page, "credentials")
    page.get_by_role("link", name="Rotate credential default").click()
    assert "1 active keys" in page.get_by_role("main").inner_text()
    secret = page.get_by_label("New secret")
    assert secret.get_attribute("type") == "password" and secret.get_attribute("autocomplete") == "off"
    secret.fill("sk_test_short")
    page.get_by_role("button", name="Rotate credential default").click()
    page.get_by_role("alert").filter(has_text="a Stripe secret must be").wait_for()
    assert page.get_by_label("New secret").input_value() == ""  # never re-rendered into the form
    assert axe_serious(page) == []
    page.get_by_label("New secret").fill(NEW_SECRET)
    page.get_by_role("button", name="Rotate credential default").click()
    page.get_by_role("status").filter(has_text="Rotated credential default").wait_for()
    assert NEW_SECRET not in page.content() and NEW_SECRET not in page.url
    assert NEW_SECRET not in ckb.logs.text()
    with ckb.admin() as c:
        assert c.get("/v1/credentials/default").json()["secret_hint"] == "sk_test_…abcd"
    assert [e for e in web.errors if "status of 422" not in e] == []  # the refused form's answer is a 422
