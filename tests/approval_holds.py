"""Calls held for approval, for the approval tests: a Stripe call sent through the proxy in a
background thread, held because its key's policy names the endpoint in `approval_endpoints`."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.harness import KeybrakeThread, wait_for
from tests.stripe_sdk import client

HELD_POLICY = {"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30}


class HeldCall:
    """`customers.create` through Keybrake in a thread: `result` (the customer) or `error` once done."""

    def __init__(self, kb: KeybrakeThread, key: dict[str, Any], email: str = "held@example.com") -> None:
        self.kb, self.key, self.email = kb, key, email
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = client(self.kb, self.key).v1.customers.create({"email": self.email})
        except BaseException as exc:
            self.error = exc

    def done(self, timeout: float = 30) -> HeldCall:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the held call never ended"
        return self


def pending_for(kb: KeybrakeThread, key_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Poll `GET /v1/approvals?state=pending&key_id=…` until `count` approvals show; returns them."""

    def shown() -> list[dict[str, Any]] | None:
        with kb.admin() as c:
            r = c.get("/v1/approvals", params={"state": "pending", "key_id": key_id})
        assert r.status_code == 200, r.text
        data: list[dict[str, Any]] = r.json()["data"]
        return data if len(data) >= count else None

    return wait_for(shown)  # type: ignore[no-any-return]


def hold(
    kb: KeybrakeThread, policy: dict[str, Any] | None = None, **fields: Any
) -> tuple[dict[str, Any], HeldCall, dict[str, Any]]:
    """Issue a key whose customers.create needs approval, send one, wait until it is pending:
    (the key, the call, its approval as GET /v1/approvals lists it)."""
    key = kb.issue({**HELD_POLICY, **(policy or {})}, **fields)
    call = HeldCall(kb, key)
    return key, call, pending_for(kb, key["id"])[0]


def decide(kb: KeybrakeThread, approval_id: str, verb: str, body: Any = None) -> httpx.Response:
    with kb.admin() as c:
        return c.post(f"/v1/approvals/{approval_id}/{verb}", json=body)
