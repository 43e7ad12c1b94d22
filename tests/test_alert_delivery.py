"""Alert delivery: once per destination per event, promptly, never lost (docs/operations.md, alerts).

Real servers (KeybrakeThread), real receivers on loopback: the fake receiver (tests/fakes/receiver.py)
and a raw TCP receiver that can accept and stay silent (tests/fakes/raw_receiver.py).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from keybrake.cli import main
from tests.fakes.raw_receiver import RawReceiver
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.test_alerts import FAST, alert, charge


def deliveries(kb: KeybrakeThread) -> list[dict[str, Any]]:
    with kb.admin() as c:
        r = c.get("/v1/alerts/deliveries", params={"limit": 200})
        assert r.status_code == 200, r.text
        return r.json()["data"]  # type: ignore[no-any-return]


@pytest.mark.pg_cluster
def test_three_replicas_post_each_event_exactly_once(tmp_path: Path, pg_url: str, fake_stripe: FakeStripe) -> None:
    """Issue example (a): three replicas on one PostgreSQL, one webhook: one POST per event, and the
    log's attempts are the POSTs made (before: three POSTs per event, one attempt logged)."""
    with RawReceiver() as hook, contextlib.ExitStack() as stack:
        kbs = [stack.enter_context(KeybrakeThread(tmp_path / "d", database_url=pg_url, **FAST)) for _ in range(3)]
        kbs[0].add_credential(fake_stripe.base_url)
        alert(kbs[0], hook.url, events=["cap.threshold", "cap.hit", "key.revoked"])
        key = kbs[0].issue({"daily_usd_cap": 10})
        for i in range(10):
            assert charge(kbs[i % 3], key) == 200
        assert charge(kbs[1], key) == 429  # cap.hit
        others = [kbs[0].issue({"daily_usd_cap": 1}) for _ in range(3)]
        for i, k in enumerate(others):
            with kbs[i].admin() as c:
                assert c.delete(f"/v1/keys/{k['id']}").status_code == 200
        wait_for(lambda: len({h.event_id for h in hook.hits}) >= 7, timeout=15)
        time.sleep(1.5)  # many more passes of every replica: nothing is sent again
        by_event = Counter(h.event_id for h in hook.hits)
        assert len(by_event) == 7 and set(by_event.values()) == {1}, by_event
        kinds = Counter(h.body["type"] for h in hook.hits)
        assert kinds == {"cap.threshold": 3, "cap.hit": 1, "key.revoked": 3}
        log = deliveries(kbs[2])
        assert len(log) == 7 and {d["state"] for d in log} == {"delivered"}
        assert sum(d["attempts"] for d in log) == len(hook.hits) == 7


@pytest.mark.timing
def test_a_silent_destination_does_not_delay_another(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Issue example (b): a receiver that accepts and never answers; six events to a healthy one
    arrive within seconds (before: 5 s each, one after another), and the scans do not stall."""
    with (
        RawReceiver("silent") as silent,
        RawReceiver() as healthy,
        KeybrakeThread(tmp_path / "d", alert_interval_s=0.1) as kb,  # default KEYBRAKE_ALERT_TIMEOUT: 5 s
    ):
        assert kb.settings.alert_timeout_s == 5.0
        kb.add_credential(fake_stripe.base_url)
        mute = alert(kb, silent.url, events=["key.revoked", "cap.threshold"], thresholds=[50])
        alert(kb, healthy.url, events=["key.revoked", "cap.threshold"], thresholds=[50])
        keys = [kb.issue({"daily_usd_cap": 1}) for _ in range(6)]
        started = time.monotonic()
        with kb.admin() as c:
            for k in keys:
                assert c.delete(f"/v1/keys/{k['id']}").status_code == 200
        wait_for(lambda: len(healthy.hits) >= 6, timeout=10)
        assert max(h.at for h in healthy.hits) - started < 3.0
        assert kb.app is not None
        hanging = [d for d in deliveries(kb) if d["alert_id"] == mute["id"]]
        assert hanging and {d["claimed_by"] for d in hanging} == {kb.app.instance_id}  # held by this replica
        capped = kb.issue({"daily_usd_cap": 2})
        crossed = time.monotonic()
        assert charge(kb, capped) == 200  # 50 % of the cap: a threshold, found by the scan
        hit = wait_for(lambda: [h for h in healthy.hits if h.body["type"] == "cap.threshold"], timeout=10)
        assert hit[0].at - crossed < 3.0
        assert len(healthy.hits) == 7 and len({h.event_id for h in healthy.hits}) == 7

        # The silent receiver got its POSTs too; each was given up after the timeout and logged.
        def settled() -> list[dict[str, Any]] | None:
            mine = [d for d in deliveries(kb) if d["alert_id"] == mute["id"]]
            return mine if len(mine) == 7 and all(d["attempts"] == 1 for d in mine) else None

        mine = wait_for(settled, timeout=15)
        assert len(silent.hits) == 7  # the POSTs made are the attempts logged (next retry 5 s later)
        assert all("KEYBRAKE_ALERT_TIMEOUT" in d["response_error"] and d["state"] == "pending" for d in mine)


def test_key_revoked_once_per_key_whichever_path_revoked_it(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with RawReceiver() as hook, KeybrakeThread(tmp_path / "d", **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.url, events=["key.revoked"])
        a = kb.issue({"daily_usd_cap": 1}, label="tenant:a")
        b = kb.issue({"daily_usd_cap": 1}, label="tenant:b")
        c = kb.issue({"daily_usd_cap": 1}, label="other:c")
        with kb.admin() as adm:
            assert adm.delete(f"/v1/keys/{a['id']}", params={"reason": "one"}).status_code == 200
            assert adm.delete(f"/v1/keys/{a['id']}", params={"reason": "again"}).status_code == 200
            r = adm.post("/v1/keys/revoke", json={"label_prefix": "tenant:", "reason": "bulk"})
            assert r.status_code == 200 and r.json()["revoked"] == 1
        # the CLI writes the store directly: a running server's scan finds the revocation
        out = CliRunner().invoke(
            main, ["keys", "revoke", "--label-prefix", "other:", "--data-dir", str(kb.settings.data_dir)]
        )
        assert out.exit_code == 0, out.output
        wait_for(lambda: len(hook.hits) >= 3, timeout=10)
        time.sleep(1.0)
        got = Counter(h.body["data"]["key_id"] for h in hook.hits)
        assert got == {a["id"]: 1, b["id"]: 1, c["id"]: 1}
        reasons = {h.body["data"]["key_id"]: h.body["data"]["reason"] for h in hook.hits}
        assert reasons[a["id"]] == "one" and reasons[b["id"]] == "bulk"


@pytest.mark.timing
def test_a_stop_mid_delivery_loses_nothing_and_the_restart_sends_at_once(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Stopped while a POST hangs: the attempt is logged, the claim released, and the next start
    sends the event at once (not after the lease), with the same X-Keybrake-Event-Id."""
    with RawReceiver("silent") as hook:
        with KeybrakeThread(tmp_path / "d", **FAST) as kb:
            kb.add_credential(fake_stripe.base_url)
            alert(kb, hook.url, events=["key.revoked"])
            k = kb.issue({"daily_usd_cap": 1})
            with kb.admin() as c:
                assert c.delete(f"/v1/keys/{k['id']}").status_code == 200
            wait_for(lambda: hook.hits, timeout=10)  # in flight, unanswered
        hook.mode = "ok"
        with KeybrakeThread(tmp_path / "d", **FAST) as kb:
            started = time.monotonic()
            wait_for(lambda: any(h.answered for h in hook.hits), timeout=10)
            assert time.monotonic() - started < 3.0
            (d,) = deliveries(kb)
            wait_for(lambda: deliveries(kb)[0]["state"] == "delivered")
            (d,) = deliveries(kb)
            assert d["attempts"] == len(hook.hits) == 2  # the interrupted POST and the one answered
            assert {h.event_id for h in hook.hits} == {d["event_id"]}  # a receiver drops the repeat by id
