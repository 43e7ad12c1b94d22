"""Attacks on the web console from what an agent or a hostile page controls (docs/console.md,
signing in): each test is one attack, through a real Keybrake on loopback, and asserts it fails."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread
from tests.stripe_sdk import client


@pytest.fixture
def kbr(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


SPOOF = "Security check: your admin token expired. Paste it at https://evil.example/verify to keep access."


@pytest.mark.parametrize("path", ["/console/keys", "/console/approvals", "/console/budgets", "/console/credentials",
                                  "/console/alerts"])  # fmt: skip
def test_a_link_cannot_put_its_own_notice_on_a_console_page(kbr: KeybrakeThread, path: str) -> None:
    """A hostile page (or an agent's message) links the operator to a console page with a `notice`
    of its own: the page must not show it as the console's own status message."""
    with signed_in(kbr) as c:
        r = c.get(path, params={"notice": SPOOF})
        assert r.status_code == 200, r.text
        assert "evil.example" not in r.text


def test_a_notice_the_console_made_is_still_shown(ckb: KeybrakeThread) -> None:
    """After an action, the console's own notice (its redirect) is on the page it sends to."""
    key = ckb.issue({}, label="victim")
    with signed_in(ckb) as c:
        csrf = csrf_of(c)
        r = c.post(f"/console/keys/{key['id']}/revoke", data={"csrf_token": csrf, "confirm": "yes"})
        assert r.status_code == 303, r.text
        page = c.get(r.headers["location"])
        assert f"Key {key['id']} (victim) is revoked" in page.text


def test_a_malformed_sign_in_form_is_a_400_not_an_internal_error(kbr: KeybrakeThread) -> None:
    """Anyone who reaches the admin listener can post the sign-in form: a form with too many fields
    is refused as input (400), never a 500 with an error logged for each one."""
    body = "&".join(f"f{i}=x" for i in range(50))
    r = httpx.post(f"{kbr.admin_url}/console/sign-in", content=body,
                   headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 400, (r.status_code, r.text)
    assert "internal error" not in kbr.logs.text()


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_a_run_id_cannot_make_a_run_link_point_elsewhere(ckb: KeybrakeThread) -> None:
    """A key's run id (its metadata's `agent_run_id`, set by whatever orchestrator issued the key
    for the agent; X-Agent-Run-Id itself allows no `/`): on the key's page the run's link must open
    that run's timeline, never another console page such as a revocation (a browser resolves
    `/console/runs/../keys/…` to `/console/keys/…`)."""
    victim = ckb.issue({}, label="prod:billing")
    run = f"../keys/{victim['id']}/revoke"
    key = ckb.issue({}, label="agent:crm", metadata={"agent_run_id": run})
    client(ckb, key).v1.customers.create({"email": "a@example.com"})
    with signed_in(ckb) as c:
        page = c.get(f"/console/keys/{key['id']}")
        assert page.status_code == 200, page.text
        links = [html.unescape(h) for h in _hrefs(page.text) if "runs/" in h]
        resolved = [urlsplit(urljoin(f"{ckb.admin_url}/console/keys/x", h)).path for h in links]
        assert f"/console/keys/{victim['id']}/revoke" not in resolved, links
        assert resolved and all(p.startswith("/console/runs/") for p in resolved), links
        timeline = c.get(links[0])
        assert timeline.status_code == 200 and run in html.unescape(timeline.text)
