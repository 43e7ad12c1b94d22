"""The async shell (proxy/pipeline.py) against a real store and a mock upstream, without sockets.

The upstream is the one-method `Upstream` interface answered by a function (like httpx's
MockTransport); the store is a real one (SQLite in tmp_path; the PostgreSQL pass's database on
that pass). Proves the shell reserves, forwards, settles and writes the audit row on each path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from keybrake.config import Settings
from keybrake.core.request import ProxyRequest
from keybrake.core.timefmt import DAY_MS
from keybrake.core.upstream import UpstreamOutcomeUnknown, UpstreamRequest, UpstreamResponse, UpstreamUnreachable
from keybrake.core.windows import Window, window_start
from keybrake.crypto import Sealer
from keybrake.proxy.pipeline import Pipeline
from keybrake.store import open_store
from keybrake.store.base import CredentialRecord, KeyRecord, Store
from keybrake.tokens import VAULT_PREFIX, new_id, new_token, token_hash
from keybrake.vendors import build_vendors
from tests.conftest import ENGINE
from tests.harness import store_options

SECRET = "sk_test_fake_secret_1234567890"
PEPPER = b"q" * 32
USD = 1_000_000
CHARGED = {"id": "ch_1", "object": "charge", "amount": 1000, "currency": "usd", "status": "succeeded"}


class FunctionUpstream:
    """An `Upstream` that answers every request from `handler` (which may raise the upstream's
    exceptions), keeping what it was sent."""

    def __init__(self, handler: Callable[[UpstreamRequest], UpstreamResponse]) -> None:
        self.handler = handler
        self.sent: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append(request)
        return self.handler(request)

    async def close(self) -> None:
        return None


def charged(request: UpstreamRequest) -> UpstreamResponse:
    return UpstreamResponse(200, [("content-type", "application/json")], json.dumps(CHARGED).encode(), 3.0)


def fail(exc: Exception) -> Callable[[UpstreamRequest], UpstreamResponse]:
    def handler(request: UpstreamRequest) -> UpstreamResponse:
        raise exc

    return handler


@pytest.fixture
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = str(request.getfixturevalue("pass_database")) if ENGINE == "postgres" else None
    s = open_store(url, tmp_path, migrate=url is None, pg=store_options())
    yield s
    await s.close()


class Shell:
    """A pipeline over `store` and `upstream`, with one Stripe credential and one vault key."""

    def __init__(self, store: Store, upstream: FunctionUpstream, key: KeyRecord, token: str) -> None:
        self.store, self.upstream, self.key, self.token = store, upstream, key, token
        self.pipeline = Pipeline(
            store=store,
            vendors=build_vendors(),
            upstream=upstream,
            settings=Settings(),
            sealer=SEALER,
            pepper=PEPPER,
            instance_id="test",
        )

    async def charge(self) -> Any:
        body = b"amount=1000&currency=usd&source=tok_visa"
        headers = (
            ("authorization", f"Bearer {self.token}"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", str(len(body))),
        )
        return await self.pipeline.handle(ProxyRequest("POST", b"/stripe/v1/charges", b"", headers, body, "127.0.0.1"))

    async def usage(self) -> tuple[int, int]:
        """(used, reserved) µUSD of the key's daily USD counter."""
        ws = window_start(Window.DAY, self.store.now_ms())
        got = (await self.store.counters_for(f"key:{self.key.id}", [("daily_usd", ws)]))["daily_usd"]
        return got.used, got.reserved

    async def row(self, response: Any) -> dict[str, Any]:
        request_id = dict(response.headers)["x-keybrake-request-id"]
        row = await self.store.get_audit(request_id)
        assert row is not None
        return row


SEALER = Sealer(b"k" * 32)


async def shell(store: Store, handler: Callable[[UpstreamRequest], UpstreamResponse], **policy: Any) -> Shell:
    now = store.now_ms()
    sealed = SEALER.seal(SECRET.encode(), "credential:main")
    assert await store.insert_credential(
        CredentialRecord("main", "stripe", sealed, "sk_…7890", None, None, now, None, new_id("cg_"))
    )
    token = new_token(VAULT_PREFIX)
    key = KeyRecord(new_id("vk_"), "stripe", "main", "t", {}, policy, 1, "active", now, now + DAY_MS, None, None, None)
    issued = await store.issue_key(key, token_hash(PEPPER, token))
    assert issued is not None
    return Shell(store, FunctionUpstream(handler), issued, token)


async def test_an_allowed_call_is_reserved_forwarded_settled_and_audited(store: Store) -> None:
    s = await shell(store, charged, daily_usd_cap=100 * USD)
    resp = await s.charge()
    assert resp.status == 200 and json.loads(resp.body) == CHARGED
    (sent,) = s.upstream.sent
    assert sent.url == "https://api.stripe.com/v1/charges" and ("authorization", f"Bearer {SECRET}") in sent.headers
    assert s.token not in repr(sent)
    headers = dict(resp.headers)
    assert (
        headers["x-keybrake-key-id"] == s.key.id and headers["x-keybrake-spend-remaining-usd"] == "90"
    )  # $100 less the $10 reserved
    row = await s.row(resp)
    assert (row["verdict"], row["status"], row["upstream_status"], row["vendor_object_id"]) == (
        "allowed",
        200,
        200,
        "ch_1",
    )
    assert await s.usage() == (10 * USD, 0)  # settled: what the answer says moved, nothing left reserved


async def test_a_refusal_sends_nothing_and_reserves_nothing(store: Store) -> None:
    s = await shell(store, charged, daily_usd_cap=100 * USD, allowed_endpoints=["GET /v1/customers"])
    resp = await s.charge()
    assert resp.status == 403 and s.upstream.sent == []
    assert (await s.row(resp))["verdict"] == "denied_endpoint_not_allowed"
    assert await s.usage() == (0, 0)


async def test_a_revoked_key_is_refused_on_the_next_request(store: Store) -> None:
    s = await shell(store, charged, daily_usd_cap=100 * USD)
    assert (await s.charge()).status == 200
    await store.revoke_key(s.key.id, "leaked")
    resp = await s.charge()
    assert resp.status == 401 and json.loads(resp.body)["error"]["code"] == "key_revoked"
    assert len(s.upstream.sent) == 1


async def test_an_unreachable_vendor_releases_the_reservation(store: Store) -> None:
    s = await shell(store, fail(UpstreamUnreachable("connection refused")), daily_usd_cap=100 * USD)
    resp = await s.charge()
    assert resp.status == 502 and json.loads(resp.body)["error"]["code"] == "upstream_unreachable"
    assert (await s.row(resp))["verdict"] == "upstream_error"
    assert await s.usage() == (0, 0)


async def test_no_answer_keeps_the_reservation(store: Store) -> None:
    s = await shell(
        store, fail(UpstreamOutcomeUnknown("read timeout", timeout=True, elapsed_ms=5.0)), daily_usd_cap=100 * USD
    )
    resp = await s.charge()
    assert json.loads(resp.body)["error"]["code"] == "upstream_timeout"
    assert (await s.row(resp))["verdict"] == "outcome_unknown"
    assert await s.usage() == (0, 10 * USD)  # kept until reconciliation reads the outcome


async def test_a_crash_in_the_upstream_fails_closed(store: Store) -> None:
    s = await shell(store, fail(RuntimeError("a bug")), daily_usd_cap=100 * USD)
    resp = await s.charge()
    assert resp.status == 503 and json.loads(resp.body)["error"]["code"] == "enforcement_unavailable"
    assert (await s.row(resp))["verdict"] == "outcome_unknown"  # it was handed over: the vendor may have acted
    assert await s.usage() == (0, 10 * USD)
