"""Alerts in the console (/console/alerts) at the HTTP level: destinations shown by host only
(never the URL's path or the signing secret), added through the API's model with its refusals on
the page, deleted after a confirmation; deliveries listed with their retry state."""

from __future__ import annotations

from tests.approval_holds import decide, hold
from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread, free_port, wait_for

SECRET_PATH = "/hooks/T000/B000/xyzSECRETpath"


def test_a_destination_is_added_shown_by_host_and_deleted_after_confirmation(ckb: KeybrakeThread) -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"  # nothing listens: deliveries fail and retry
    with signed_in(ckb) as c:
        token = csrf_of(c, "/console/alerts")
        bad = {"csrf_token": token, "type": "webhook", "url": url, "thresholds": "50, 150"}
        r = c.post("/console/alerts", data={**bad, "event:cap.hit": "on"})
        assert r.status_code == 422 and "thresholds are percentages from 1 to 100" in r.text
        assert 'value="50, 150"' in r.text and SECRET_PATH in r.text  # the form is kept for its author
        assert 'name="event:cap.hit" value="on" checked' in r.text
        r = c.post("/console/alerts", data={**bad, "thresholds": "50"})
        assert r.status_code == 422 and "events" in r.text
        form = {**bad, "thresholds": "80", "event:approval.requested": "on"}
        r = c.post("/console/alerts", data=form)
        # a webhook's signing secret is shown once, on this answer (as the API does), never again
        assert r.status_code == 200 and "shown only this once" in r.text, r.text
        secret = r.text.split('id="signing-secret" type="text" readonly value="')[1].split('"')[0]
        assert secret.startswith("whsec_kb_") and r.headers["cache-control"] == "no-store"
        with ckb.admin() as api:
            (dest,) = api.get("/v1/alerts").json()["data"]
        listed = c.get("/console/alerts")
        assert dest["id"] in listed.text
        assert "http://127.0.0.1:" in listed.text and SECRET_PATH not in listed.text
        assert "whsec_" not in listed.text
        # a held call queues an approval.requested delivery, which fails and is retried
        _, call, apr = hold(ckb)
        page = wait_for(lambda: (p := c.get("/console/alerts?state=pending")) and "approval.requested" in p.text and p)
        assert dest["id"] in page.text
        decide(ckb, apr["id"], "deny", {"reason": "test over"})
        call.done()
        confirm = c.post(f"/console/alerts/{dest['id']}/delete", data={"csrf_token": token})
        assert confirm.status_code == 200 and f"Delete destination {dest['id']}?" in confirm.text
        assert SECRET_PATH not in confirm.text
        r = c.post(f"/console/alerts/{dest['id']}/delete", data={"csrf_token": token, "confirm": "yes"})
        assert r.status_code == 303
        with ckb.admin() as api:
            assert api.get("/v1/alerts").json()["data"] == []
    assert SECRET_PATH not in ckb.logs.text() and secret not in ckb.logs.text()


def test_a_filter_or_cursor_the_page_cannot_use_is_said_not_dropped(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        r = c.get("/console/alerts", params={"state": "nope"})
        assert r.status_code == 400 and "state must be one of" in r.text
        r = c.get("/console/alerts", params={"cursor": "garbage"})
        assert r.status_code == 400 and "cursor is not one this page made" in r.text
        r = c.get("/console/approvals", params={"state": "nope"})
        assert r.status_code == 400 and "state must be one of" in r.text
        assert c.get("/console/alerts", params={"state": "pending"}).status_code == 200
