"""The web console's fixtures: a Keybrake with its admin listener (where the console lives) and a
Stripe credential on the fake Stripe, Debian's Chromium through Playwright, a signed-in page,
and the checks every page gets (console errors, axe-core, a screenshot in test-artifacts/console/)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
NO_CHROMIUM = "no chromium on PATH (scripts/test installs it; or: apt-get install --no-install-recommends chromium)"


@pytest.fixture
def ckb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    """A Keybrake with the admin API (and so the console) on a listener of its own, and a Stripe
    credential on the fake Stripe."""
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        server.add_credential(fake_stripe.base_url)
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (one per test module)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium: apt-get install --no-install-recommends chromium")
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A browser page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        # A load the page's own navigation cut short (ERR_ABORTED: an icon still loading when a
        # form was sent) is no fault; anything else (refused, blocked by CSP, reset) is.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.errors.append(f"failed: {request.url} ({request.failure})")


@pytest.fixture
def web(browser: Any, ckb: KeybrakeThread) -> Iterator[Watched]:
    """A page signed in to `ckb`'s console (a fresh browser context: its own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = Watched(context.new_page())
    sign_in(w.page, ckb)
    yield w
    context.close()


def sign_in(page: Any, kb: KeybrakeThread, token: str = ADMIN_TOKEN) -> None:
    """Sign in through the form; ends on the overview."""
    page.goto(f"{kb.admin_url}/console/sign-in")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{kb.admin_url}/console")


def axe_serious(page: Any) -> list[dict[str, Any]]:
    """axe-core's (vendored, tests/console/vendor) serious and critical violations on the page.
    The script is evaluated through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot to test-artifacts/console/<name>.png; returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
