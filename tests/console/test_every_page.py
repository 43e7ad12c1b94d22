"""Every page of the console's navigation (found from the navigation itself), in Chromium, on a
wide and on a narrow screen: it answers 200, the browser reports no error, axe-core finds no
serious or critical violation (labels, names, contrast among them), nothing is wider than a
phone's screen, and the keyboard reaches the skip link first and then the navigation."""

from __future__ import annotations

from typing import Any

import pytest

from keybrake.console.web import NAV
from tests.console.conftest import Watched, axe_serious, shoot, sign_in
from tests.harness import KeybrakeThread


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["wide", "narrow"])
def test_every_navigation_page_is_clean_usable_and_fits(
    browser: Any, ckb: KeybrakeThread, width: int, height: int
) -> None:
    ckb.issue({"daily_usd_cap": 10}, label="sweep:agent:run-1", metadata={"agent_run_id": "run-1"})  # some content
    context = browser.new_context(viewport={"width": width, "height": height})
    w = Watched(context.new_page())
    sign_in(w.page, ckb)
    for href, label in NAV:
        answer = w.page.goto(f"{ckb.admin_url}{href}")
        assert answer is not None and answer.status == 200, (href, answer and answer.status)
        assert w.page.get_by_role("heading", level=1).count() == 1, href
        assert axe_serious(w.page) == [], href
        overflow = w.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (href, f"{overflow}px wider than the screen")
        nav = w.page.get_by_role("navigation", name="Console")
        assert nav.get_by_role("link", name=label, exact=True).get_attribute("aria-current") == "page", href
        w.page.keyboard.press("Tab")
        assert w.page.evaluate("document.activeElement.textContent") == "Skip to content", href
        w.page.keyboard.press("Tab")
        assert w.page.evaluate("document.activeElement.getAttribute('href')") == "/console", href
        if href == "/console/keys":  # the kill switch in view, without scrolling sideways, on any screen
            box = w.page.get_by_role("link", name="Revoke").first.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width, (width, box)
        slug = href.removeprefix("/console").strip("/") or "overview"
        shoot(w.page, f"sweep-{width}-{slug}")
    assert w.errors == []
    context.close()


def test_every_scrolling_table_box_is_reachable_by_keyboard_and_named() -> None:
    """A table box that scrolls sideways (any, once its rows are long enough or the screen narrow)
    is focusable and named, so a keyboard can scroll it (axe-core's scrollable-region-focusable)."""
    import re
    from importlib.resources import files

    found = 0
    for template in (files("keybrake.console") / "templates").iterdir():
        for tag in re.findall(r'<div class="table-wrap"[^>]*>', template.read_text()):
            found += 1
            assert 'tabindex="0"' in tag and 'role="region"' in tag, (template.name, tag)
            assert "aria-label=" in tag or "aria-labelledby=" in tag, (template.name, tag)
    assert found >= 15
