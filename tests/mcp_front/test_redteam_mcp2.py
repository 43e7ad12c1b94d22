"""Second red-team round against the MCP front, as a prompt-injected agent holding one vault key.

Each test is a fault found by attacking the front; each is marked xfail(strict) until its fix
lands. Raw JSON-RPC over httpx so the exact bytes are the agent's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.mcp_front.test_redteam_mcp import ACCEPT, tool_call


def _stall_behind(kb: KeybrakeThread, vault_key: str, body: bytes, *, chunked: bool) -> tuple[float, dict]:
    """(how long /healthz waited while `body` was answered, the tools/call result)."""
    stalled: list[float] = []

    def other_tenant() -> None:
        time.sleep(0.4)  # while the call is being checked
        started = time.monotonic()
        httpx.get(f"{kb.url}/healthz", timeout=60)
        stalled.append(time.monotonic() - started)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 16 * 1024):
            yield body[i : i + 16 * 1024]

    waiter = threading.Thread(target=other_tenant)
    waiter.start()
    answer = httpx.post(
        f"{kb.url}/_keybrake/mcp",
        content=chunks() if chunked else body,
        headers={**ACCEPT, "authorization": f"Bearer {vault_key}"},
        timeout=120,
    )
    waiter.join()
    return stalled[0], answer.json()["result"]


def _costly_invalid_call() -> bytes:
    # ~0.9 MB (inside Stripe's 1 MiB limit): every item valid but the last, so the first-error-only
    # check still walks the whole list before it finds the one problem.
    items: list[dict[str, object]] = [{"price": "price_1", "quantity": 1}] * 25_000 + [{"x": 1}]
    return json.dumps(tool_call("stripe_create_subscription", {"customer": "cus_1", "items": items})).encode()


def test_a_large_call_held_off_the_event_loop_by_content_length(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    # Held: with a Content-Length above 64 KiB the check runs in a thread.
    key = kb.issue({"daily_usd_cap": 100})
    stalled, result = _stall_behind(kb, key["key"], _costly_invalid_call(), chunked=False)
    assert result["isError"] and "Nothing was sent" in result["content"][0]["text"]
    assert stalled < 0.5, f"/healthz waited {stalled:.2f} s"
    assert fake_stripe.requests == []


@pytest.mark.xfail(
    strict=True,
    reason="front.py decides 'large' from Content-Length only: a chunked body (no Content-Length) of the "
    "same size is checked and encoded on the event loop, stalling every tenant",
)
def test_a_chunked_large_call_does_not_stall_the_proxy(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    stalled, result = _stall_behind(kb, key["key"], _costly_invalid_call(), chunked=True)
    assert result["isError"] and "Nothing was sent" in result["content"][0]["text"]
    assert fake_stripe.requests == []
    assert stalled < 0.5, f"/healthz waited {stalled:.2f} s behind one chunked tools/call"
