"""Keys pages in a real browser (Debian's Chromium): revoke a key that just made a call and watch
its next call refused, the bulk kill switch by label prefix, and the key page's patch and live tail."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import stripe

from tests.console.conftest import Watched, axe_serious, shoot, sign_in
from tests.harness import KeybrakeThread
from tests.stripe_sdk import client


def _refused(sc: stripe.StripeClient) -> int | None:
    try:
        sc.v1.customers.create({"email": "after@example.com"})
    except stripe.StripeError as exc:
        return exc.http_status
    return None


def test_revoke_from_the_keys_page_stops_the_next_call(web: Watched, ckb: KeybrakeThread) -> None:
    key = ckb.issue({"daily_usd_cap": 5, "max_requests_per_hour": 100}, label="agent:checkout")
    ckb.issue({"total_usd_cap": 20}, label="agent:refunds")
    sc = client(ckb, key)
    assert sc.v1.customers.create({"email": "a@example.com"}).id
    p = web.page
    p.goto(f"{ckb.admin_url}/console/keys")
    assert p.get_by_role("heading", level=1).inner_text() == "Keys"
    shoot(p, "keys")
    assert axe_serious(p) == []
    p.get_by_role("link", name="Revoke agent:checkout").click()
    assert "refused 401" in p.get_by_role("main").inner_text()
    assert axe_serious(p) == []
    p.get_by_label("Reason (optional)").fill("leaked in a build log")
    p.get_by_role("button", name=f"Revoke key {key['id']}").click()
    p.wait_for_url(f"{ckb.admin_url}/console/keys?notice=*")
    assert "is revoked" in p.get_by_role("status").inner_text()
    assert _refused(sc) == 401
    assert ckb.key(key["id"])["status"] == "revoked"
    p.set_viewport_size({"width": 390, "height": 844})
    shoot(p, "keys-narrow")
    assert axe_serious(p) == []
    assert web.errors == []


def test_bulk_revoke_by_label_prefix(web: Watched, ckb: KeybrakeThread) -> None:
    a, b = ckb.issue({}, label="nightly:a"), ckb.issue({}, label="nightly:b")
    other = ckb.issue({}, label="other:c")
    p = web.page
    p.goto(f"{ckb.admin_url}/console/keys?label_prefix=nightly")  # the list's filter is not the bulk form's
    p.get_by_role("button", name="Review bulk revocation").click()  # an empty filter: refused
    assert "empty filter would revoke every key" in p.get_by_role("alert").inner_text()
    p.get_by_label("Label prefix to revoke").fill("nightly:")
    p.get_by_role("button", name="Review bulk revocation").click()
    assert "This will revoke 2 active keys" in p.get_by_role("main").inner_text()
    shoot(p, "keys-bulk-confirm")
    assert axe_serious(p) == []
    p.get_by_role("button", name="Revoke 2 keys").click()
    p.wait_for_url(f"{ckb.admin_url}/console/keys?notice=*")
    assert "Revoked 2 keys" in p.get_by_role("status").inner_text()
    assert [_refused(client(ckb, k)) for k in (a, b)] == [401, 401]
    assert _refused(client(ckb, other)) is None  # other:c still works
    # the one console error: the refused empty filter's 422 answer, which Chromium reports
    assert [e for e in web.errors if "422" not in e] == [] and len(web.errors) == 1


def test_key_detail_patch_and_live_tail(web: Watched, ckb: KeybrakeThread) -> None:
    key = ckb.issue(
        {"daily_usd_cap": 5, "max_requests_per_hour": 50, "allowed_endpoints": ["POST /v1/customers"]},
        label="agent:crm",
        metadata={"team": "growth"},
    )
    sc = client(ckb, key)
    sc.v1.customers.create({"email": "a@example.com"}, options={"headers": {"X-Agent-Run-Id": "run-42"}})
    p = web.page
    p.goto(f"{ckb.admin_url}/console/keys/{key['id']}")
    assert p.get_by_role("link", name="run-42").get_attribute("href") == "/console/runs/run-42"
    patch = p.get_by_label("Merge patch (JSON)")
    bad = '{"policy": {"max_requests_per_hour": -3}}'
    patch.fill(bad)
    p.get_by_role("button", name=f"Apply the patch to key {key['id']}").click()
    assert "policy.max_requests_per_hour" in p.get_by_role("alert").inner_text()
    assert p.get_by_label("Merge patch (JSON)").input_value() == bad
    p.get_by_label("Merge patch (JSON)").fill('{"policy": {"max_requests_per_hour": 60}}')
    p.get_by_role("button", name=f"Apply the patch to key {key['id']}").click()
    assert "Key changed" in p.get_by_role("status").first.inner_text()
    assert ckb.key(key["id"])["policy"]["max_requests_per_hour"] == 60
    p.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    tail = p.locator("section#tail")
    assert tail.locator("tbody tr").count() == 1
    time.sleep(0.5)
    sc.v1.customers.create({"email": "b@example.com"})
    deadline = time.monotonic() + 8
    while tail.locator("tbody tr").count() < 2 and time.monotonic() < deadline:
        p.wait_for_timeout(250)  # htmx reloads the section every 2 s; the page itself is not reloaded
    assert tail.locator("tbody tr").count() == 2
    # the usage above the tail is live too: the hourly request counter moved without a reload
    assert "2 / 60" in p.locator("#live").inner_text()
    assert p.evaluate("window.notReloaded") is True
    shoot(p, "key-detail")
    assert axe_serious(p) == []
    # the one console error: the refused patch's 422 answer, which Chromium reports
    assert [e for e in web.errors if "422" not in e] == [] and len(web.errors) == 1


def test_the_tail_stops_with_the_session(browser: Any, ckb: KeybrakeThread) -> None:
    """A session that ends under an open key page: the next refresh of the tail carries no row and
    takes the page to sign-in (and back to the key after it)."""
    key = ckb.issue({}, label="agent:tail")
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, ckb)
    page.goto(f"{ckb.admin_url}/console/keys/{key['id']}")
    context.clear_cookies()
    page.wait_for_url(f"{ckb.admin_url}/console/sign-in?next=**", timeout=6000)
    assert f"/console/keys/{key['id']}" in unquote(page.url)
    context.close()


def test_the_key_pages_fit_a_phone(browser: Any, ckb: KeybrakeThread) -> None:
    """The key page, its revoke confirmation and the bulk confirmation on a 390 px screen: no serious
    axe-core violation (a table that scrolls sideways is reachable by keyboard), nothing wider."""
    key = ckb.issue({"daily_usd_cap": 10, "allowed_endpoints": ["POST /v1/customers"]}, label="phone:agent:run-1")
    client(ckb, key).v1.customers.create({"email": "a@example.com"})
    context = browser.new_context(viewport={"width": 390, "height": 844})
    w = Watched(context.new_page())
    sign_in(w.page, ckb)
    w.page.goto(f"{ckb.admin_url}/console/keys")
    w.page.get_by_label("Label prefix to revoke").fill("phone:")
    w.page.get_by_role("button", name="Review bulk revocation").click()
    for path in ("", f"/console/keys/{key['id']}", f"/console/keys/{key['id']}/revoke"):
        if path:
            w.page.goto(f"{ckb.admin_url}{path}")
        assert axe_serious(w.page) == [], path or "bulk confirmation"
        overflow = w.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path or "bulk confirmation", f"{overflow}px wider than the screen")
    assert w.errors == []
    context.close()
