"""The overview page (docs/console.md, overview): spend per vendor as GET /v1/spend reports it, the
last 24 hours' refusals by code, keys near a cap, alert deliveries, pending approvals."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from keybrake.console.format import usd
from keybrake.core.timefmt import utc_day_start
from tests.approval_holds import decide, hold
from tests.console.overview_seed import seed
from tests.console.test_sessions import signed_in
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for

FAST: dict[str, Any] = {"alert_interval_s": 0.1, "alert_retry_base_s": 0.1}


def section(html: str, heading_id: str) -> str:
    """The HTML of the overview section headed by `heading_id`."""
    start = html.index(f'id="{heading_id}"')
    end = html.find("<section", start)
    return html[start : end if end != -1 else len(html)]


def text(fragment: str) -> str:
    """Tags out, whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def api_spend(kb: KeybrakeThread, since_ms: int, **params: str) -> list[dict[str, object]]:
    with kb.admin() as c:
        r = c.get("/v1/spend", params={"group_by": "vendor", "since": str(since_ms // 1000), **params})
    assert r.status_code == 200, r.text
    data: list[dict[str, object]] = r.json()["data"]
    return data


def test_the_overview_shows_spend_refusals_near_caps_and_approvals(ckb: KeybrakeThread) -> None:
    seeded = seed(ckb)
    _key, call, approval = hold(ckb)
    try:
        with signed_in(ckb) as c:
            html = c.get("/console").text
        # spend: today's Stripe spend as /v1/spend reports it ($20 + $7)
        today = {r["group"]: r for r in api_spend(ckb, utc_day_start(int(time.time() * 1000)))}
        assert str(today["stripe"]["charged_usd"]) == "27"
        spend = text(section(html, "ov-spend"))
        stripe = today["stripe"]
        assert usd(stripe["charged_usd"]) == "$27.00" and "$27.00 today" in spend
        assert "$27.00 this month" in spend
        assert stripe["denied"] == 1 and stripe["cap_hits"] == 1
        assert f"Today: {stripe['requests']} requests, 1 denied, 1 cap hit" in spend
        # refusals of the last 24 h, by code
        refused = text(section(html, "ov-refused"))
        assert "1 cap hit 1 denial" in refused
        assert "endpoint_not_allowed denial 1" in refused and "spend_cap_exceeded cap hit 1" in refused
        # the near-cap key: $20 of $25, and only it (the other is at 7 %)
        near = text(section(html, "ov-near"))
        assert f"{seeded.near['id']} billing:agent:run-7 stripe daily_usd_cap" in near
        assert "$20.00 / $25.00 (80%)" in near
        assert seeded.other["id"] not in near
        # the pending approval
        pending = text(section(html, "ov-approvals"))
        assert "1 waiting for a decision" in pending
        assert approval["id"] in pending and "POST /v1/customers" in pending
    finally:
        assert decide(ckb, approval["id"], "deny", {"reason": "not tonight"}).status_code == 200
        call.done()
    with signed_in(ckb) as c:
        pending = text(section(c.get("/console").text, "ov-approvals"))
    assert "0 waiting for a decision" in pending and approval["id"] not in pending


def test_an_empty_installation_says_so(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        html = c.get("/console").text
    assert "No spend this month." in html
    assert "No call was refused in the last 24 hours." in html
    assert "No active key is at 80% of a cap." in html
    assert "No alert has been queued." in html


def test_a_revoked_key_is_not_near_a_cap(ckb: KeybrakeThread) -> None:
    seeded = seed(ckb)
    with ckb.admin() as c:
        assert c.delete(f"/v1/keys/{seeded.near['id']}").status_code == 200
    with signed_in(ckb) as c:
        near = text(section(c.get("/console").text, "ov-near"))
    assert seeded.near["id"] not in near


@pytest.mark.sqlite_only
def test_refusal_counts_read_the_refusals_index_only(ckb: KeybrakeThread) -> None:
    """The 24-hour refusal count walks ix_audit_refusals, never the day's other rows."""
    rows = ckb.query(
        "EXPLAIN QUERY PLAN SELECT verdict, error_code, COUNT(*) FROM audit"
        " WHERE id >= 'aud_0' AND error_code IS NOT NULL GROUP BY verdict, error_code"
    )
    plan = " ".join(str(r[-1]) for r in rows)
    assert "ix_audit_refusals" in plan and "COVERING INDEX" in plan, plan


def test_recent_alerts_show_the_deliveries_never_the_url(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with ReceiverThread() as hook, KeybrakeThread(tmp_path / "d", admin_port=0, **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        with kb.admin() as c:
            url = hook.base_url + "/hooks/secret-path-kb"
            r = c.post("/v1/alerts", json={"type": "webhook", "url": url, "events": ["cap.hit"]})
            assert r.status_code == 201, r.text
            alert_id = r.json()["id"]
        seed(kb)

        def delivered() -> list[dict[str, object]] | None:
            with kb.admin() as c:
                rows: list[dict[str, object]] = c.get("/v1/alerts/deliveries").json()["data"]
            return rows if rows and rows[0]["state"] == "delivered" else None

        (row,) = wait_for(delivered)
        assert row["type"] == "cap.hit" and row["alert_id"] == alert_id
        with signed_in(kb) as c:
            alerts = section(c.get("/console").text, "ov-alerts")
        assert f"cap.hit webhook {alert_id} delivered (HTTP 200) 1" in text(alerts)
        assert "secret-path-kb" not in alerts and hook.base_url not in alerts


@pytest.mark.sqlite_only
def test_near_cap_keys_are_found_on_the_counters_window_index(ckb: KeybrakeThread) -> None:
    one = (
        "SELECT c.scope FROM counters c JOIN vault_keys k ON k.id = substr(c.scope, 5)"
        " WHERE c.window_start = 0 AND substr(c.scope, 1, 4) = 'key:' AND c.cap = 'total_usd'"
        " AND c.cap_limit > 0 AND (c.used + c.reserved) * 100 >= c.cap_limit * 80"
        " AND k.status = 'active' AND k.expires_at > 0"
    )
    plan = " ".join(str(r[-1]) for r in ckb.query(f"EXPLAIN QUERY PLAN {one}"))
    assert "SEARCH c USING INDEX ix_counters_window (window_start=?)" in plan, plan
    assert "SCAN" not in plan, plan
