"""Alert URLs: what delivery would refuse is refused when the destination is written (docs/api.md, alerts)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from keybrake.config import Settings
from keybrake.jobs.alert_delivery import alert_url_refusal
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.waits import wait_until


def test_a_localhost_url_is_refused_at_create_unless_the_name_is_listed(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Newcomer: `http://localhost:…` was accepted (201, warnings []) and then every attempt failed
    `UpstreamForbidden: localhost resolves only to non-public addresses`. Now a 422 naming `url`
    and the rule; with `localhost` in KEYBRAKE_UPSTREAM_HOSTS it is accepted and delivered."""
    with ReceiverThread() as hook:
        url = hook.base_url.replace("127.0.0.1", "localhost") + "/h"
        with KeybrakeThread(tmp_path / "a") as kb, kb.admin() as c:
            r = c.post("/v1/alerts", json={"type": "webhook", "url": url, "events": ["key.revoked"]})
            assert r.status_code == 422, r.text
            assert "url" in r.text and "KEYBRAKE_UPSTREAM_HOSTS" in r.text
        hosts = ("127.0.0.1", "localhost")
        with KeybrakeThread(tmp_path / "b", upstream_hosts=hosts, alert_interval_s=0.05) as kb, kb.admin() as c:
            r = c.post("/v1/alerts", json={"type": "webhook", "url": url, "events": ["key.revoked"]})
            assert r.status_code == 201 and r.json()["warnings"] == [], r.text
            kb.add_credential(fake_stripe.base_url)
            key = kb.issue({"daily_usd_cap": 1})
            assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
            wait_until(lambda: bool(hook.fake.requests), "the key.revoked POST")
            assert [(x.json or {}).get("type") for x in hook.fake.requests] == ["key.revoked"]


def test_a_refused_delivery_logs_its_reason(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """The log line of a failed attempt says why (status null alone said nothing), never the URL path."""
    with KeybrakeThread(tmp_path / "d", alert_interval_s=0.05, alert_retry_base_s=0.1) as kb, kb.admin() as c:
        r = c.post("/v1/alerts", json={"type": "webhook", "url": "http://127.0.0.1:9/s3cr3t-path",
                                       "events": ["key.revoked"]})  # fmt: skip
        assert r.status_code == 201, r.text
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 1})
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
        wait_until(lambda: any("alert delivery failed" in x for x in kb.logs.lines), "the failed attempt's log line")
        lines = [json.loads(x) for x in kb.logs.lines if "alert delivery failed" in x]
    assert lines and "could not connect" in str(lines[0]["error"]), lines
    assert lines[0]["type"] == "key.revoked" and "s3cr3t" not in kb.logs.text()


def test_the_static_rule_matches_the_delivery_clients() -> None:
    s = Settings(data_dir=Path("/nonexistent"), allow_insecure_upstream=True, upstream_hosts=("127.0.0.1",))
    assert alert_url_refusal("http://localhost:8080/h", s) is not None
    assert alert_url_refusal("http://127.0.0.1:8080/h", s) is None
    listed = Settings(data_dir=Path("/nonexistent"), allow_insecure_upstream=True, upstream_hosts=("localhost",))
    assert alert_url_refusal("http://localhost:8080/h", listed) is None
    assert alert_url_refusal("http://localhost:8080/h", Settings(data_dir=Path("/x"))) is not None  # http


def test_the_deliveries_list_pages_newest_first_with_a_state_filter(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """`GET /v1/alerts/deliveries?limit=&cursor=&state=`: newest first, `next_cursor` like /v1/keys."""
    with ReceiverThread() as hook:
        with KeybrakeThread(tmp_path / "d", alert_interval_s=0.05, alert_retry_base_s=60) as kb, kb.admin() as c:
            for url in (hook.base_url + "/h", "http://127.0.0.1:9/dead"):
                r = c.post("/v1/alerts", json={"type": "webhook", "url": url, "events": ["key.revoked"]})
                assert r.status_code == 201, r.text
            kb.add_credential(fake_stripe.base_url)
            for _ in range(3):
                key = kb.issue({"daily_usd_cap": 1})
                assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
                time.sleep(0.01)
            wait_until(  # the three POSTs answered and their outcomes written
                lambda: len(c.get("/v1/alerts/deliveries", params={"state": "delivered"}).json()["data"]) == 3,
                "3 deliveries in state delivered",
            )
            pages: list[list[dict[str, object]]] = []
            cursor = None
            while True:
                r = c.get("/v1/alerts/deliveries", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                pages.append(r.json()["data"])
                cursor = r.json()["next_cursor"]
                if cursor is None:
                    break
            rows = [d for p in pages for d in p]
            assert [len(p) for p in pages] == [2, 2, 2]
            keys = [(str(d["created_at"]), str(d["id"])) for d in rows]
            assert keys == sorted(keys, reverse=True)
            delivered = c.get("/v1/alerts/deliveries", params={"state": "delivered"}).json()["data"]
            assert len(delivered) == 3 and {d["state"] for d in delivered} == {"delivered"}
            pending = c.get("/v1/alerts/deliveries", params={"state": "pending"}).json()["data"]
            assert len(pending) == 3 and {d["state"] for d in pending} == {"pending"}
            bad = c.get("/v1/alerts/deliveries", params={"state": "done"})
            assert bad.status_code == 400 and bad.json()["error"]["field"] == "state"
