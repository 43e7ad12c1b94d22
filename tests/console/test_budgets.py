"""Budgets in the console (/console/budgets) at the HTTP level: created through the API's model
(its refusals shown with the form kept), listed with used / limit meters, deleted after a
confirmation."""

from __future__ import annotations

from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread

FORM = {
    "name": "support agents",
    "scope_kind": "label_prefix",
    "scope_value": "support:",
    "daily_usd_cap": "250",
    "monthly_usd_cap": "",
    "total_usd_cap": "",
    "daily_request_cap": "1000",
    "approval_above_usd": "",
    "timezone": "Europe/Berlin",
}


def _budgets(kb: KeybrakeThread) -> list[dict[str, object]]:
    with kb.admin() as c:
        r = c.get("/v1/budgets")
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_an_invalid_cap_shows_the_apis_message_with_the_form_kept(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        token = csrf_of(c, "/console/budgets")
        r = c.post("/console/budgets", data={**FORM, "daily_usd_cap": "12.5.0", "csrf_token": token})
        assert r.status_code == 422, r.text
        with ckb.admin() as api:
            body = {"name": "x", "scope": "all", "daily_usd_cap": "12.5.0"}
            expected = api.post("/v1/budgets", json=body).json()["error"]["message"]
        assert "must be an amount in US dollars" in expected
        assert f"daily_usd_cap: {expected}".replace("'", "&#39;") in r.text
        for value in ('value="support agents"', 'value="support:"', 'value="12.5.0"', 'value="Europe/Berlin"'):
            assert value in r.text
        assert 'value="label_prefix" selected' in r.text
        # a refusal of the service itself (no cap at all) is shown the same way
        empty = {**FORM, "daily_usd_cap": "", "daily_request_cap": "", "csrf_token": token}
        r = c.post("/console/budgets", data=empty)
        assert r.status_code == 422 and "a budget needs at least one of" in r.text
        assert _budgets(ckb) == []


def test_a_valid_budget_is_listed_with_its_meters_and_deleted_after_confirmation(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        token = csrf_of(c, "/console/budgets")
        r = c.post("/console/budgets", data={**FORM, "csrf_token": token})
        assert r.status_code == 303 and "Created%20budget%20support%20agents" in r.headers["location"]
        (budget,) = _budgets(ckb)
        assert budget["scope"] == {"label_prefix": "support:"} and budget["daily_usd_cap"] == 250
        listed = c.get(r.headers["location"])
        assert "Created budget support agents" in listed.text
        assert '<meter min="0" max="250" value="0"' in listed.text and "$0.00 / $250.00" in listed.text
        assert "0 / 1000" in listed.text and "resets 20" in listed.text
        confirm = c.post(f"/console/budgets/{budget['id']}/delete", data={"csrf_token": token})
        assert confirm.status_code == 200 and "Delete budget support agents?" in confirm.text
        assert 'name="confirm" value="yes"' in confirm.text
        assert len(_budgets(ckb)) == 1  # the confirmation deletes nothing
        r = c.post(f"/console/budgets/{budget['id']}/delete", data={"csrf_token": token, "confirm": "yes"})
        assert r.status_code == 303
        assert _budgets(ckb) == []
        r = c.post(f"/console/budgets/{budget['id']}/delete", data={"csrf_token": token, "confirm": "yes"})
        assert r.status_code == 404 and "not found" in r.text
