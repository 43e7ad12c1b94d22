"""Upstream addresses (CONTRACT §4.1): a vendor secret never goes to a non-public address."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from keybrake.proxy.egress import is_public
from keybrake.proxy.upstream import AiohttpUpstream, UpstreamForbidden, UpstreamRequest
from keybrake.store import open_store
from keybrake.store.base import CredentialRecord
from tests import harness
from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread


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
