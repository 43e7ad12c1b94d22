"""Upstream addresses (docs/operations.md, upstream hosts): a vendor secret never goes to a non-public address."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from keybrake.core.upstream import UpstreamForbidden, UpstreamRequest
from keybrake.net.egress import is_public
from keybrake.net.upstream import AiohttpUpstream
from keybrake.store import open_store
from keybrake.store.base import CredentialRecord
from tests import harness
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread, wait_for


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("54.187.174.169", True),
        ("2600:1f14::1", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


async def _get(upstream: AiohttpUpstream, url: str) -> int:
    try:
        return (await upstream.send(UpstreamRequest("GET", url, [], b""))).status
    finally:
        await upstream.close()


def test_the_resolver_refuses_loopback_unless_the_host_is_listed(fake_stripe: FakeStripe) -> None:
    url = f"http://localhost:{fake_stripe.port}/v1/balance"
    with pytest.raises(UpstreamForbidden):
        asyncio.run(_get(AiohttpUpstream(timeout_s=5, connect_timeout_s=5, max_response_bytes=10**6), url))
    assert fake_stripe.requests == []
    listed = AiohttpUpstream(timeout_s=5, connect_timeout_s=5, max_response_bytes=10**6, explicit_hosts=("localhost",))
    assert asyncio.run(_get(listed, url)) == 401  # reached the fake (no secret sent in this call)
    suffix = AiohttpUpstream(
        timeout_s=5, connect_timeout_s=5, max_response_bytes=10**6, explicit_hosts=("*.localhost",)
    )
    with pytest.raises(UpstreamForbidden):
        asyncio.run(_get(suffix, url))


def test_a_credential_host_resolving_privately_gets_502_and_nothing_is_sent(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    with KeybrakeThread(tmp_path / "d", upstream_hosts=("127.0.0.1",)) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        assert kb.app is not None
        sealed = kb.app.rt.sealer.seal(REAL_SECRET.encode(), "credential:private")
        other = open_store(harness.DATABASE_URL, tmp_path / "d", migrate=False)
        # as if DNS for the stored host now pointed at a loopback address
        asyncio.run(
            other.insert_credential(
                CredentialRecord(
                    "private", "stripe", sealed, "sk_test_…7890", f"http://localhost:{fake_stripe.port}", False, 0, None
                )
            )
        )
        asyncio.run(other.close())
        key2 = kb.issue({"daily_usd_cap": 10}, credential="private")
        r = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": 100, "currency": "usd"},
            headers={"Authorization": f"Bearer {key2['key']}"},
        )
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_forbidden"
        assert fake_stripe.requests == []
        with kb.admin() as c:
            assert c.get(f"/v1/keys/{key2['id']}").json()["usage"]["daily_usd"]["reserved"] == 0
        ok = httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
        assert ok.status_code == 200  # the listed 127.0.0.1 credential still works


# -- the rules of the running process, on every send (not only when the credential was written) --


def via(kb: KeybrakeThread, key: dict[str, Any]) -> stripe.StripeClient:
    return stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)


def test_a_credential_written_under_insecure_settings_gets_nothing_after_a_restart_without_them(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Issue example (e): http://127.0.0.1 stored with KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1 kept
    receiving the real secret after a restart without it."""
    with KeybrakeThread(tmp_path / "d", allow_insecure_upstream=True) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        assert httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"}).is_success
    fake_stripe.reset()
    for changed in ({"allow_insecure_upstream": False}, {"upstream_hosts": ()}):
        with KeybrakeThread(tmp_path / "d", **changed) as kb:
            r = httpx.post(
                f"{kb.url}/stripe/v1/charges",
                data={"amount": 100, "currency": "usd", "source": "tok_visa"},
                headers={"Authorization": f"Bearer {key['key']}"},
            )
            assert r.status_code == 502, changed
            err = r.json()["error"]
            assert err["code"] == "upstream_forbidden" and "Nothing was sent" in err["message"]
            assert REAL_SECRET not in r.text
            assert fake_stripe.requests == []
            row = kb.audit(key_id=key["id"])[0]
            assert row["verdict"] == "upstream_error" and row["status"] == 502
            with kb.admin() as c:
                assert c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]["reserved"] == 0
            # writing such a credential now is refused at the API too (422 naming base_url)
            with kb.admin() as c:
                w = c.post(
                    "/v1/credentials",
                    json={"vendor": "stripe", "name": "again", "secret": REAL_SECRET, "base_url": fake_stripe.base_url},
                )
                assert w.status_code == 422 and w.json()["error"]["field"] == "base_url"


def test_pre_flight_lookups_and_reconciliation_obey_the_running_settings(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    direct = stripe.StripeClient(REAL_SECRET, base_addresses={"api": fake_stripe.base_url}, max_network_retries=0)
    unknown = direct.v1.payment_intents.create(
        {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "customer": "cus_A"}
    )
    with KeybrakeThread(tmp_path / "d", allow_insecure_upstream=True) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 100, "customer_allowlist": ["cus_A"]})
        pending = via(kb, key).v1.payment_intents.create(
            {
                "amount": 1200,
                "currency": "usd",
                "customer": "cus_A",
                "confirm": True,
                "payment_method": "pm_card_authenticationRequired",
            }
        )
        assert pending.status == "requires_action"
    fake_stripe.payment_intents[pending.id].update(status="succeeded", amount_received=1200)
    fake_stripe.reset()
    with KeybrakeThread(tmp_path / "d", allow_insecure_upstream=False, reconcile_interval_s=0.1) as kb:
        # a confirm of an object Keybrake never saw needs a pre-flight GET with the secret: refused
        with pytest.raises(stripe.APIError) as exc:
            via(kb, key).v1.payment_intents.confirm(unknown.id)
        assert exc.value.http_status == 502
        assert isinstance(exc.value.json_body, dict) and exc.value.json_body["error"]["code"] == "upstream_forbidden"
        # reconciliation passes run, and never read the pending object
        wait_for(lambda: any("reconciliation lookup refused" in line for line in kb.logs.lines))
        assert fake_stripe.requests == []
        row = next(r for r in kb.audit(key_id=key["id"]) if r["vendor_object_id"] == pending.id)
        assert row["cost_source"] == "estimate"


def test_alert_destinations_are_checked_again_before_each_delivery(tmp_path: Path) -> None:
    with ReceiverThread() as hook:
        with KeybrakeThread(tmp_path / "d", allow_insecure_upstream=True) as kb:
            with kb.admin() as c:
                r = c.post("/v1/alerts", json={"type": "webhook", "url": hook.base_url, "events": ["key.revoked"]})
                assert r.status_code == 201
        fast: dict[str, Any] = {"alert_interval_s": 0.1, "alert_retry_base_s": 0.1}
        with KeybrakeThread(tmp_path / "d", allow_insecure_upstream=False, **fast) as kb:
            with kb.admin() as c:  # the vendor's default https host: no request is made here
                c.post("/v1/credentials", json={"vendor": "stripe", "name": "default", "secret": REAL_SECRET})
            key = kb.issue({"daily_usd_cap": 1})
            with kb.admin() as c:
                assert c.delete(f"/v1/keys/{key['id']}").status_code == 200

                def refused() -> list[dict[str, Any]]:
                    data: list[dict[str, Any]] = c.get("/v1/alerts/deliveries").json()["data"]
                    return [d for d in data if d["response_error"] and "current settings" in d["response_error"]]

                wait_for(refused)
        assert hook.fake.requests == []
