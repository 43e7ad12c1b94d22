"""Listener limits and the separate admin listener, against real servers on loopback.

Header size (431), header-read timeout, idle keep-alive, connection limit (503), the admin API
on its own TCP listener or unix socket (404 for it on the proxy port), and its own connection
budget while the proxy port is flooded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keybrake.config import Settings
from keybrake.listener import ListenerError, bind_listeners, ceiling
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread, wait_for
from tests.waits import wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def read_response(s: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a raw socket: (status, headers, body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `timeout` seconds."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@contextlib.contextmanager
def idle_connections(port: int, n: int) -> Iterator[list[socket.socket]]:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def open_count(kb: KeybrakeThread, role: str) -> int:
    assert kb.listeners is not None
    return next(len(lst.open) for lst in kb.listeners.all if lst.role == role)


# -- header size ---------------------------------------------------------------------------


def test_a_header_past_the_limit_gets_431_and_one_under_it_is_served(kb: KeybrakeThread) -> None:
    limit = kb.settings.max_header_bytes
    ok = httpx.get(f"{kb.url}/healthz", headers={"x-pad": "a" * (limit - 200)})
    assert ok.status_code == 200
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (limit + 10) + b"\r\n\r\n")
        status, headers, body = read_response(s)
        assert status == 431 and headers["connection"] == "close"
        err = json.loads(body)["error"]
        assert err["type"] == "keybrake_error" and err["code"] == "header_too_large"
        assert "KEYBRAKE_MAX_HEADER_BYTES" in err["message"]
        assert closed_by_server(s, 2)
    # many small headers count too
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert read_response(s)[0] == 431


def test_an_unfinished_huge_header_is_cut_off_early(kb: KeybrakeThread) -> None:
    """25 MB of one header never sent whole: the server answers 431 after ~16 KiB and closes."""
    sent = 0
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(b"GET /stripe/v1/balance HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"z" * 65536
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 25 * 1024 * 1024:
                s.sendall(chunk)
                sent += len(chunk)
        status, _, body = read_response(s)
    assert status == 431 and json.loads(body)["error"]["code"] == "header_too_large"
    assert sent < 25 * 1024 * 1024  # the server stopped reading long before the end


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.timing
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    with KeybrakeThread(tmp_path / "d", header_timeout_s=0.5, keepalive_timeout_s=30) as kb:
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            started = time.monotonic()
            assert closed_by_server(s, 5)
            assert 0.4 < time.monotonic() - started < 3
        # a slow trickle of header bytes does not keep it open either (each byte used to
        # reset uvicorn's keep-alive timer)
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            started = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            closed = False
            for _ in range(40):
                try:
                    s.sendall(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if closed_by_server(s, 0.1):
                    closed = True
                    break
            assert closed and time.monotonic() - started < 3
        # after a response, the next request's head has the same deadline
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            started = time.monotonic()
            assert closed_by_server(s, 5)
            assert time.monotonic() - started < 3
        assert any("no complete request head in time" in line for line in kb.logs.lines)


@pytest.mark.timing
def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    with KeybrakeThread(tmp_path / "d", header_timeout_s=30, keepalive_timeout_s=0.3) as kb:
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
            started = time.monotonic()
            assert closed_by_server(s, 5)
            assert time.monotonic() - started < 2
        # a slow request whose head arrived in time is not cut by the header deadline
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200


# -- connection limit ----------------------------------------------------------------------


def test_past_the_connection_limit_requests_get_503_then_recover(tmp_path: Path) -> None:
    with KeybrakeThread(tmp_path / "d", max_connections=5) as kb:
        with idle_connections(kb.port, 5):
            wait_for(lambda: open_count(kb, "all") == 5)
            r = httpx.get(f"{kb.url}/healthz")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            err = r.json()["error"]
            assert err["type"] == "keybrake_error" and err["code"] == "too_many_connections"
            assert "KEYBRAKE_MAX_CONNECTIONS" in err["message"]
        wait_for(lambda: open_count(kb, "all") == 0)
        assert httpx.get(f"{kb.url}/healthz", timeout=30).status_code == 200  # httpx's 5 s passed once in CI
        # past the ceiling (limit + overflow) a connection is closed at once
        with idle_connections(kb.port, ceiling(5)):
            wait_for(lambda: open_count(kb, "all") == ceiling(5))
            with socket.create_connection(("127.0.0.1", kb.port)) as s:
                assert closed_by_server(s, 2)
            assert open_count(kb, "all") == ceiling(5)  # never more file descriptors than that
        assert any("past the connection limit" in line for line in kb.logs.lines)


def test_the_admin_listener_keeps_its_own_connections_while_the_proxy_port_is_flooded(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """The kill switch: with the proxy port full of idle connections, a revoke still works."""
    with KeybrakeThread(tmp_path / "d", max_connections=20, admin_port=0) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        with idle_connections(kb.port, ceiling(20)):
            wait_for(lambda: open_count(kb, "proxy") == ceiling(20))
            with kb.admin() as c:
                assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
        r = httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"


# -- the separate admin listener -----------------------------------------------------------


def test_with_an_admin_listener_the_proxy_port_does_not_serve_the_admin_api(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    with KeybrakeThread(tmp_path / "d", admin_port=0) as kb:
        assert kb.admin_url != kb.url
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        for path in ("/v1/keys", f"/v1/keys/{key['id']}", "/v1/audit", "/openapi.json", "/metrics"):
            r = httpx.get(f"{kb.url}{path}", headers=AUTH)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found"
        r = httpx.delete(f"{kb.url}/v1/keys/{key['id']}", headers=AUTH)
        assert r.status_code == 404
        for path in ("/healthz", "/readyz"):
            assert httpx.get(f"{kb.url}{path}").status_code == 200
            assert httpx.get(f"{kb.admin_url}{path}").status_code == 200
        # the proxy answers on the proxy port only
        agent = {"Authorization": f"Bearer {key['key']}"}
        assert httpx.get(f"{kb.url}/stripe/v1/balance", headers=agent).status_code == 200
        assert httpx.get(f"{kb.url}/_keybrake/self", headers=agent).status_code == 200
        assert httpx.get(f"{kb.admin_url}/stripe/v1/balance", headers=agent).status_code == 404
        assert httpx.get(f"{kb.admin_url}/_keybrake/self", headers=agent).status_code == 404
        assert httpx.get(f"{kb.admin_url}/openapi.json", timeout=30).status_code == 200  # its first build
        assert httpx.get(f"{kb.admin_url}/v1/keys", headers=AUTH).status_code == 200


def test_the_admin_api_on_a_unix_socket(fake_stripe: FakeStripe) -> None:
    short = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))  # unix socket paths are short
    path = short / "admin.sock"
    try:
        with KeybrakeThread(short / "d", admin_socket=path) as kb:
            assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o600
            kb.add_credential(fake_stripe.base_url)
            key = kb.issue({"daily_usd_cap": 10})
            with kb.admin() as c:
                assert c.get("/v1/keys").json()["data"][0]["id"] == key["id"]
                assert c.get("/v1/keys", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert httpx.get(f"{kb.url}/v1/keys", headers=AUTH).status_code == 404
        assert not path.exists()  # removed at shutdown
        # a stale socket file (a crashed server's) is replaced; any other file is refused
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()
        with KeybrakeThread(short / "d", admin_socket=path) as kb, kb.admin() as c:
            assert c.get("/healthz").status_code == 200
        path.write_text("not a socket")
        with pytest.raises(ListenerError, match="not a socket"):
            bind_listeners(Settings(admin_socket=path), proxy_sock=socket.socket())
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(short / "d")


def test_a_live_admin_socket_is_not_taken_over() -> None:
    short = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))
    path = short / "admin.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    proxy = socket.socket()
    try:
        with pytest.raises(ListenerError, match="another server is listening"):
            bind_listeners(Settings(admin_socket=path), proxy_sock=proxy)
    finally:
        live.close()
        proxy.close()
        path.unlink()


@pytest.mark.timing
def test_a_stalled_body_closes_the_connection_and_a_truncated_request_is_never_forwarded(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    with KeybrakeThread(tmp_path / "d", header_timeout_s=0.5) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 100})
        head = (
            "POST /stripe/v1/charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Authorization: Bearer {key['key']}\r\nContent-Length: 100\r\n\r\n"
        ).encode()
        # the body stops arriving: closed after the timeout
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            s.sendall(head + b"amount=100&currency=usd")
            started = time.monotonic()
            assert closed_by_server(s, 5)
            assert time.monotonic() - started < 3
        # the client leaves mid-body: nothing is forwarded (a truncated "name=Jo" used to be)
        customers = head.replace(b"/v1/charges", b"/v1/customers")
        with socket.create_connection(("127.0.0.1", kb.port)) as s:
            s.sendall(customers + b"name=Jo")
            time.sleep(0.2)  # the server has read the partial body before the client leaves
        wait_until(lambda: any("a request body stalled" in line for line in kb.logs.lines), "the stalled body's log")
        assert fake_stripe.requests == []


def test_an_upgrade_request_is_answered_as_plain_http(kb: KeybrakeThread) -> None:
    with socket.create_connection(("127.0.0.1", kb.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        assert read_response(s)[0] == 200


@pytest.mark.timing
def test_a_trickled_body_is_closed_at_its_deadline(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Found by the red-team run: a byte every 0.3 s re-armed the stall timer for ever, and four such
    connections held a 4-connection listener (the kill switch included) indefinitely."""
    with KeybrakeThread(tmp_path / "d", header_timeout_s=1.0, body_timeout_s=2.0, max_connections=4) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 1})
        head = (
            f"POST /stripe/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key['key']}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        socks = [socket.create_connection(("127.0.0.1", kb.port)) for _ in range(4)]
        for s in socks:
            s.sendall(head)
        started, closed = time.monotonic(), 0
        while time.monotonic() - started < 6 and closed < len(socks):
            closed = 0
            for s in socks:
                try:
                    s.sendall(b"a")
                except OSError:
                    closed += 1
            time.sleep(0.3)
        assert closed == len(socks) and time.monotonic() - started < 5  # closed near the 2 s deadline
        for s in socks:
            s.close()
        with kb.admin() as c:
            assert c.delete(f"/v1/keys/{key['id']}").status_code == 200  # the kill switch answers
        assert fake_stripe.requests == []
