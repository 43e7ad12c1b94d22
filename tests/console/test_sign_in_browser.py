"""Signing in and out in a real browser (Debian's Chromium): the form, the overview, sign-out."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Watched, axe_serious, shoot, sign_in
from tests.harness import KeybrakeThread


def test_sign_in_and_out_in_a_browser(browser: Any, ckb: KeybrakeThread) -> None:
    context = browser.new_context()
    w = Watched(context.new_page())
    w.page.goto(f"{ckb.admin_url}/console")
    assert w.page.url == f"{ckb.admin_url}/console/sign-in?next=/console"
    shoot(w.page, "sign-in")
    assert axe_serious(w.page) == []
    w.page.get_by_label("Admin token").fill("kb_admin_not-a-real-one")
    w.page.get_by_role("button", name="Sign in").click()
    assert "Unknown or revoked admin token" in w.page.get_by_role("alert").inner_text()
    sign_in(w.page, ckb)
    assert w.page.get_by_role("heading", level=1).inner_text() == "Overview"
    cookie = next(c for c in context.cookies() if c["name"] == "keybrake_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert w.page.evaluate("document.cookie") == ""  # no script on the page can read it
    w.page.get_by_role("button", name="Sign out").click()
    w.page.wait_for_url(f"{ckb.admin_url}/console/sign-in?why=signed_out")
    w.page.goto(f"{ckb.admin_url}/console")
    assert "/console/sign-in" in w.page.url
    # the one console error: the refused sign-in's 401 answer, which Chromium reports
    assert [e for e in w.errors if "401" not in e] == []
    context.close()
