"""The approvals inbox (/console/approvals) at the HTTP level: decisions through the console's
forms reach the held call, are recorded as `console:adm_…`, and are refused without CSRF, without
a reason (deny), or once the approval is decided (the API's 409 message)."""

from __future__ import annotations

import httpx

from tests.approval_holds import decide, hold
from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread


def _approval(kb: KeybrakeThread, approval_id: str) -> dict[str, object]:
    with kb.admin() as c:
        r = c.get(f"/v1/approvals/{approval_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_inbox_lists_a_held_call_and_approving_it_completes_the_call(ckb: KeybrakeThread) -> None:
    _, call, apr = hold(ckb, label="support:refunds:<b>run</b>", metadata={"agent_run_id": "run-77"})
    with signed_in(ckb) as c:
        page = c.get("/console/approvals")
        assert page.status_code == 200
        assert apr["id"] in page.text and "POST" in page.text and "/v1/customers" in page.text
        assert "support:refunds:&lt;b&gt;run&lt;/b&gt;" in page.text and "<b>run</b>" not in page.text
        assert "run-77" in page.text and "matches the key&#39;s approval_endpoints entry" in page.text
        assert 'hx-trigger="every 3s"' in page.text
        token = csrf_of(c, "/console/approvals")
        r = c.post(
            f"/console/approvals/{apr['id']}/approve",
            data={"csrf_token": token, "reason": "checked", "action": "approve"},
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"].startswith("/console/approvals?notice=Approved")
        call.done()
        assert call.error is None and call.result.email == "held@example.com"
        after = _approval(ckb, apr["id"])
        assert after["state"] == "approved" and after["reason"] == "checked"
        assert after["decided_by"] == "console:" + _admin_id(ckb)
        listed = c.get("/console/approvals?state=approved")
        assert apr["id"] in listed.text and "console:adm_" in listed.text
        # a second decision loses, with the API's message, on the page
        r = c.post(f"/console/approvals/{apr['id']}/deny", data={"csrf_token": token, "reason": "late"})
        assert r.status_code == 409 and f"approval {apr['id']} is already approved by console:adm_" in r.text


def _admin_id(kb: KeybrakeThread) -> str:
    """The id (adm_…) of the one admin token the test server has (read from its database)."""
    rows = kb.query("SELECT id FROM admin_tokens")
    assert len(rows) == 1, rows
    return str(rows[0][0])


def test_a_post_without_csrf_is_refused_and_the_approval_stays_pending(ckb: KeybrakeThread) -> None:
    _, call, apr = hold(ckb)
    with signed_in(ckb) as c:
        r = c.post(f"/console/approvals/{apr['id']}/approve", data={"action": "approve"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = c.post(f"/console/approvals/{apr['id']}/approve", data={"action": "approve", "csrf_token": "forged"})
        assert r.status_code == 403
    assert _approval(ckb, apr["id"])["state"] == "pending"
    decide(ckb, apr["id"], "deny", {"reason": "test over"})
    call.done()


def test_deny_needs_a_reason_and_keeps_what_was_typed(ckb: KeybrakeThread) -> None:
    _, call, apr = hold(ckb)
    with signed_in(ckb) as c:
        token = csrf_of(c, "/console/approvals")
        r = c.post(f"/console/approvals/{apr['id']}/deny", data={"csrf_token": token, "reason": "  "})
        assert r.status_code == 422 and "a reason is required" in r.text
        assert _approval(ckb, apr["id"])["state"] == "pending"
        r = c.post(
            f"/console/approvals/{apr['id']}/approve",
            data={"csrf_token": token, "action": "grant", "grant_run_usd": "0", "reason": "typed reason"},
        )
        assert r.status_code == 422 and "a grant of $0 would cover no call" in r.text
        assert 'value="typed reason"' in r.text and 'value="0"' in r.text
        r = c.post(f"/console/approvals/{apr['id']}/deny", data={"csrf_token": token, "reason": "not this one"})
        assert r.status_code == 303
    call.done()
    assert call.error is not None and "not this one" in str(call.error)
    assert _approval(ckb, apr["id"])["state"] == "denied"


def test_the_pending_fragment_answers_204_while_nothing_changed(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        empty = c.get("/console/approvals/pending")
        assert empty.status_code == 200 and "No call is waiting" in empty.text
        shown = empty.text.split("shown=")[1].split('"')[0]
        assert c.get("/console/approvals/pending", params={"shown": shown}).status_code == 204
        _, call, apr = hold(ckb)
        fresh = c.get("/console/approvals/pending", params={"shown": shown})
        assert fresh.status_code == 200 and apr["id"] in fresh.text and "<html" not in fresh.text
    decide(ckb, apr["id"], "deny", {"reason": "test over"})
    call.done()


def test_without_a_session_the_inbox_sends_to_sign_in(ckb: KeybrakeThread) -> None:
    r = httpx.get(f"{ckb.admin_url}/console/approvals/pending")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
    # htmx's poll is told to load the sign-in page rather than swap it into the list
    r = httpx.get(f"{ckb.admin_url}/console/approvals/pending", headers={"HX-Request": "true"})
    assert r.status_code == 204 and r.headers["hx-redirect"] == "/console/sign-in?next=/console/approvals"
