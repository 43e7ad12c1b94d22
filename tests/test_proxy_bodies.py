"""Proxied request bodies: never read before the vault key is known, and bounded all together.

A request body is read whole before it is forwarded (one parse, then the same bytes sent on), up
to the vendor's limit (45 MiB for Resend). Without these rules, anyone reaching the proxy port
could make Keybrake hold a body per connection without holding a key at all.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for


def _head(kb: KeybrakeThread, token: str, length: int) -> bytes:
    return (
        b"POST /stripe/v1/charges HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


@pytest.mark.timing
def test_a_body_is_not_read_before_the_vault_key_is_known(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """100 MB announced with an unknown (well-formed) key and with no key: 401 after the head, unread."""
    real = kb.issue({"daily_usd_cap": 10})["key"]
    unknown = real[:-10] + ("A" if real[-10] != "A" else "B") + real[-9:]  # breaks the checksum or the lookup
    for token in (unknown, "", "vault_key_" + "x" * 49):
        with socket.create_connection(("127.0.0.1", kb.port), timeout=5) as s:
            s.sendall(_head(kb, token, 100_000_000) + b"amount=1&" * 100)
            started = time.monotonic()
            answer = s.recv(65536)
            assert time.monotonic() - started < 3
        status = answer.split(b"\r\n", 1)[0]
        assert status in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 400 Bad Request"), answer[:200]
        assert b"connection: close" in answer.lower()
    assert fake_stripe.requests == []
    rows = kb.audit()
    assert rows and all(r["verdict"].startswith("denied_key") for r in rows)


def test_bodies_held_at_once_are_bounded(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", max_body_bytes=4 * 1024 * 1024, max_buffered_body_bytes=1024 * 1024) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        h = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/x-www-form-urlencoded"}
        big = b"amount=100&currency=usd&description=" + b"x" * (2 * 1024 * 1024)
        r = httpx.post(f"{kb.url}/stripe/v1/charges", content=big, headers=h, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
        assert r.headers["stripe-should-retry"] == "true"
        small = httpx.post(
            f"{kb.url}/stripe/v1/charges", content=b"amount=100&currency=usd&source=tok_visa", headers=h, timeout=10
        )
        assert small.status_code == 200  # the budget was given back
        app = kb.app
        assert app is not None
        # The small body's share is given back when its request ends, just after the answer is sent.
        wait_for(lambda: app.body_budget.held == 0, timeout=5)
        assert len(fake_stripe.requests) == 1


def test_a_proxied_answer_has_one_date_header(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    r = httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 200
    assert len(r.headers.get_list("date")) == 1 and "server" not in r.headers
