"""The admin gate: failures never lock out a valid token, forwarded-for is believed only from
trusted proxies, and no body is read before the token is checked (then capped at 1 MiB)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.admin.gate import FAILURES_PER_MINUTE, MAX_ADMIN_BODY_BYTES, AuthFailures, client_address
from keybrake.store.base import AdminTokenRecord
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread
from tests.test_listener import closed_by_server, read_response

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRONG = {"Authorization": "Bearer kb_admin_wrong_token_0000000000000000"}


def test_wrong_tokens_from_the_agents_address_never_block_the_valid_one(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """Issue example (a): an agent cannot block its own revoke by failing ten times."""
    key = kb.issue({"daily_usd_cap": 10})
    agent = {"Authorization": f"Bearer {key['key']}"}
    codes = [httpx.get(f"{kb.url}/v1/keys", headers=WRONG).status_code for _ in range(FAILURES_PER_MINUTE)]
    assert codes == [401] * FAILURES_PER_MINUTE
    revoke = httpx.delete(f"{kb.url}/v1/keys/{key['id']}", headers=AUTH)
    assert revoke.status_code == 200 and revoke.json()["status"] == "revoked"
    r = httpx.get(f"{kb.url}/stripe/v1/balance", headers=agent)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
    eleventh = httpx.get(f"{kb.url}/v1/keys", headers=WRONG)
    assert eleventh.status_code == 429 and eleventh.json()["error"]["code"] == "too_many_auth_failures"
    assert eleventh.headers["connection"] == "close"
    # a vault key or no token are failures too, and the valid token still gets in
    assert httpx.get(f"{kb.url}/v1/keys", headers=agent).status_code == 429
    assert httpx.get(f"{kb.url}/v1/keys").status_code == 429
    assert httpx.get(f"{kb.url}/v1/keys", headers=AUTH).status_code == 200
    assert httpx.post(f"{kb.url}/v1/keys", headers=AUTH, json={"vendor": "stripe", "policy": {}}).status_code == 201
    assert any("too many failures" in line and "127.0.0.1" in line for line in kb.logs.lines)


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    """Issue example (b): uvicorn's default trusted X-Forwarded-For from loopback."""
    with KeybrakeThread(tmp_path / "a") as kb:
        codes = [
            httpx.get(f"{kb.url}/v1/keys", headers={**WRONG, "X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(FAILURES_PER_MINUTE + 1)
        ]
        assert codes[-1] == 429  # every attempt counted under the real peer, 127.0.0.1
        assert not any("203.0.113." in line for line in kb.logs.lines)
        # nor can spoofed failures lock out anyone else behind a would-be proxy
        assert httpx.get(f"{kb.url}/v1/keys", headers=AUTH).status_code == 200
    with KeybrakeThread(tmp_path / "b", trusted_proxies=("127.0.0.1",)) as kb:
        via = {"X-Forwarded-For": "203.0.113.5"}
        codes = [
            httpx.get(f"{kb.url}/v1/keys", headers={**WRONG, **via}).status_code for _ in range(FAILURES_PER_MINUTE + 1)
        ]
        assert codes[-1] == 429
        other = {"X-Forwarded-For": "203.0.113.6"}
        assert httpx.get(f"{kb.url}/v1/keys", headers={**WRONG, **other}).status_code == 401
        assert any("203.0.113.5" in line for line in kb.logs.lines)
    # a trusted proxy elsewhere: the loopback peer's header is not believed
    with KeybrakeThread(tmp_path / "c", trusted_proxies=("10.9.0.0/16",)) as kb:
        for i in range(FAILURES_PER_MINUTE + 1):
            r = httpx.get(f"{kb.url}/v1/keys", headers={**WRONG, "X-Forwarded-For": f"198.51.100.{i}"})
        assert r.status_code == 429
        assert not any("198.51.100." in line for line in kb.logs.lines)


def _post_head(path: str, length: int, *, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_huge_admin_body_without_a_token_is_refused_unread(kb: KeybrakeThread) -> None:
    """Issue example (c): 100 MB bodies were read and parsed before the token was checked."""
    size = 100 * 1024 * 1024
    sent = 0
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(_post_head("/v1/keys", size, token=None))
        s.sendall(b"{" + b" " * 65535)
        sent = 65536
        status, headers, body = read_response(s)
        assert status == 401 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "admin_token_invalid"
        try:
            while sent < size:
                s.sendall(b" " * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 16 * 1024 * 1024  # the server closed the connection instead of reading on


def test_admin_bodies_are_capped_at_one_mebibyte(kb: KeybrakeThread) -> None:
    # declared too large: 413 before a byte of it is read
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(_post_head("/v1/keys", 100 * 1024 * 1024, token=ADMIN_TOKEN))
        status, headers, body = read_response(s)
        assert status == 413 and headers["connection"] == "close"
        err = json.loads(body)["error"]
        assert err["code"] == "body_too_large" and err["type"] == "keybrake_error" and "field" in err
        assert closed_by_server(s, 2)

    # streamed without a length: counted, 413 past the cap
    def chunks() -> Iterator[bytes]:
        yield b'{"vendor": "stripe", "label": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    r = httpx.post(
        f"{kb.url}/v1/keys", headers={**AUTH, "Content-Type": "application/json"}, content=chunks(), timeout=10
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    # at the cap it is read and judged on its content (here: a label too long → 422)
    body = b'{"vendor": "stripe", "policy": {}, "label": "' + b"x" * (MAX_ADMIN_BODY_BYTES - 60) + b'"}'
    assert len(body) <= MAX_ADMIN_BODY_BYTES
    r = httpx.post(f"{kb.url}/v1/keys", headers={**AUTH, "Content-Type": "application/json"}, content=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "label"


def test_the_token_is_looked_up_once_per_request(kb: KeybrakeThread) -> None:
    assert kb.app is not None
    store = kb.app.rt.store
    calls = 0
    original = store.admin_token_by_hash

    async def counting(token_hash: str) -> AdminTokenRecord | None:
        nonlocal calls
        calls += 1
        return await original(token_hash)

    store.admin_token_by_hash = counting  # type: ignore[method-assign]
    try:
        assert httpx.get(f"{kb.url}/v1/keys", headers=AUTH).status_code == 200
        assert httpx.get(f"{kb.url}/metrics", headers=AUTH).status_code == 200
    finally:
        store.admin_token_by_hash = original  # type: ignore[method-assign]
    assert calls == 2
    assert httpx.get(f"{kb.url}/metrics").status_code == 401


def test_metrics_can_be_public(tmp_path: Path) -> None:
    with KeybrakeThread(tmp_path / "d", metrics_public=True) as kb:
        assert httpx.get(f"{kb.url}/metrics").status_code == 200
        assert httpx.get(f"{kb.url}/v1/keys").status_code == 401


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=60))
def test_the_failure_limiter_model(events: list[int]) -> None:
    """A reference model: per address, the n-th failure within the minute is refused iff n > 10;
    memory stays bounded whatever the number of addresses."""
    limiter = AuthFailures(max_addresses=8)
    counts: dict[int, int] = {}
    for addr in events:
        counts[addr] = counts.get(addr, 0) + 1
        got = limiter.failed(f"10.0.0.{addr}")
        assert len(limiter) <= 8
        if got != min(counts[addr], FAILURES_PER_MINUTE + 1):
            # only an address evicted for space may start again from 1
            assert got == 1
            counts[addr] = 1


def test_client_address_groups_ipv6_by_64() -> None:
    assert client_address({"client": ("2001:db8:1:2:3:4:5:6", 1)}) == "2001:db8:1:2::/64"
    assert client_address({"client": ("::ffff:192.0.2.1", 1)}) == "192.0.2.1"
    assert client_address({"client": ("192.0.2.1", 1)}) == "192.0.2.1"
    assert client_address({"client": None}) == "local"
