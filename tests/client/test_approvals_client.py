"""`kb.approvals` (sync and async) over a real admin API: list, iterate, get, approve, deny; a
decision is sent once, never retried."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import stripe

from keybrake_client import AsyncKeybrake, Keybrake, KeybrakeAPIError
from keybrake_client.models import Approval
from tests.approval_holds import HeldCall, hold, pending_for
from tests.client.test_admin_client import _Busy, busy  # noqa: F401 - the fixture
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread
from tests.stripe_sdk import code_of


def test_list_iterate_get_approve_with_a_grant(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key, call, listed = hold(kb)
    second = HeldCall(kb, key)
    both = pending_for(kb, key["id"], 2)
    with Keybrake(kb.url, ADMIN_TOKEN, timeout=10) as admin:
        page = admin.approvals.list(state="pending", key_id=key["id"], limit=1)
        assert isinstance(page.data[0], Approval) and page.next_cursor is not None
        assert [a.id for a in admin.approvals.iterate(state="pending", page_size=1)] == [a["id"] for a in both]
        got = admin.approvals.get(listed["id"])
        assert (got.state, got.key_id, got.method, got.amount_usd) == ("pending", key["id"], "POST", Decimal(0))
        assert got.expires_at > got.created_at and got.decided_at is None
        done = admin.approvals.approve(listed["id"], reason="ok", grant_run_usd=Decimal("12.5"))
        assert (done.state, done.reason, done.grant_run_usd) == ("approved", "ok", Decimal("12.5"))
        assert done.decided_by is not None and done.decided_by.startswith("adm_")
        with pytest.raises(KeybrakeAPIError) as info:
            admin.approvals.deny(listed["id"], "late")
        assert (info.value.status, info.value.code) == (409, "conflict")
        assert "already approved" in info.value.message
        other = both[0]["id"] if both[0]["id"] != listed["id"] else both[1]["id"]
        assert admin.approvals.deny(other, "only one").state == "denied"
        assert [a.id for a in admin.approvals.list(state="denied").data] == [other]
    assert call.done().error is None
    err = second.done().error
    assert isinstance(err, stripe.StripeError) and code_of(err) == "approval_denied"


def test_async_approvals(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key, call, listed = hold(kb)

    async def go() -> None:
        async with AsyncKeybrake(kb.url, ADMIN_TOKEN, timeout=10) as admin:
            page = await admin.approvals.list(state="pending", key_id=key["id"])
            assert [a.id for a in page.data] == [listed["id"]]
            assert [a.id async for a in admin.approvals.iterate(key_id=key["id"], page_size=1)] == [listed["id"]]
            assert (await admin.approvals.get(listed["id"])).state == "pending"
            denied = await admin.approvals.deny(listed["id"], "no")
            assert (denied.state, denied.reason) == ("denied", "no")
            with pytest.raises(KeybrakeAPIError) as info:
                await admin.approvals.approve(listed["id"])
            assert info.value.status == 409 and "already denied" in info.value.message

    asyncio.run(go())
    err = call.done().error
    assert isinstance(err, stripe.StripeError) and code_of(err) == "approval_denied"


def test_decisions_are_sent_once(busy: str) -> None:  # noqa: F811 - the fixture
    with Keybrake(busy, ADMIN_TOKEN, retries=2) as client:
        for call, method, tries in (
            (lambda: client.approvals.get("apr_1"), "GET", 3),
            (lambda: client.approvals.list(), "GET", 3),
            (lambda: client.approvals.approve("apr_1", grant_run_usd=5), "POST", 1),
            (lambda: client.approvals.deny("apr_1", "no"), "POST", 1),
        ):
            _Busy.seen = []
            with pytest.raises(KeybrakeAPIError) as info:
                call()
            assert info.value.status == 503
            assert _Busy.seen == [method] * tries
