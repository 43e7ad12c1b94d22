"""A hostile upstream's answer headers through a running Keybrake (red team, evil_upstream.py
`ctl_char`): a header value uvicorn refuses to write (`X-Evil: a\\x7fb`) once made the server drop
the agent's connection after the charge was settled, so an agent retrying without an
Idempotency-Key could pay twice. Now the header is dropped, the answer arrives, the row says so."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import ADMIN_TOKEN, KeybrakeThread

CHARGE = json.dumps(
    {"id": "ch_evil1", "object": "charge", "amount": 100, "currency": "usd", "status": "succeeded", "paid": True}
).encode()
EVIL_HEADERS = [b"X-Evil: a\x7fb", b"X-Ctl: a\x01b", b"X-Good: ok", b"X-Latin: caf\xe9"]


class _Evil(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        want = next((int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:")), 0)
        while len(body) < want:
            body += conn.recv(65536)
        lines = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", b"Request-Id: req_evil"]
        lines += [b"Content-Length: " + str(len(CHARGE)).encode(), *EVIL_HEADERS]
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + CHARGE)


@pytest.fixture
def evil_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Evil)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_control_character_in_a_vendor_header_is_dropped_and_the_agent_gets_its_answer(
    tmp_path: Path, evil_port: int
) -> None:
    with KeybrakeThread(tmp_path / "data") as kb:
        kb.add_credential(f"http://127.0.0.1:{evil_port}")
        key = kb.issue({"daily_usd_cap": 1000})
        with httpx.Client(base_url=kb.url, timeout=20) as c:
            r = c.post(
                "/stripe/v1/charges",
                data={"amount": "100", "currency": "usd", "source": "tok_visa"},
                headers={"Authorization": f"Bearer {key['key']}"},
            )
        assert r.status_code == 200 and r.json()["id"] == "ch_evil1"
        names = {k.decode("latin-1").lower(): v for k, v in r.headers.raw}
        assert "x-evil" not in names and "x-ctl" not in names
        assert names["x-good"] == b"ok" and names["x-latin"] == b"caf\xe9"
        (row,) = kb.audit()
        assert row["verdict"] == "allowed" and row["cost_usd"] == 1  # USD
        assert "x-evil" in row["reason"] and "x-ctl" in row["reason"] and "x-good" not in row["reason"]


class _Dated(_Evil):
    """Answers like `_Evil`, with the vendor's own Date and Server headers in `HEADERS`."""

    HEADERS: list[bytes] = []

    def handle(self) -> None:
        global EVIL_HEADERS
        saved, EVIL_HEADERS = EVIL_HEADERS, self.HEADERS
        try:
            super().handle()
        finally:
            EVIL_HEADERS = saved


VENDOR_DATE = "Thu, 01 Jan 2015 00:00:00 GMT"


@pytest.mark.parametrize(
    "headers",
    [
        [f"Date: {VENDOR_DATE}".encode()],
        [f"DATE: {VENDOR_DATE}".encode(), b"Server: nginx"],
        [f"date: {VENDOR_DATE}".encode(), f"Date: {VENDOR_DATE}".encode()],
    ],
    ids=["Date", "DATE+Server", "two"],
)
def test_every_answer_carries_one_date_keybrakes(tmp_path: Path, headers: list[bytes]) -> None:
    _Dated.HEADERS = headers
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Dated)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with KeybrakeThread(tmp_path / "data") as kb:
            kb.add_credential(f"http://127.0.0.1:{server.server_address[1]}")
            key = kb.issue({"daily_usd_cap": 1000, "allowed_endpoints": ["POST /v1/charges"]})
            auth = {"Authorization": f"Bearer {key['key']}"}
            with httpx.Client(base_url=kb.url, timeout=20) as c:
                answers = [
                    c.post("/stripe/v1/charges", data={"amount": "100", "currency": "usd"}, headers=auth),
                    c.get("/stripe/v1/customers", headers=auth),  # refused by Keybrake: not allowed
                    c.get("/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
                ]
    finally:
        server.shutdown()
        server.server_close()
    assert [r.status_code for r in answers] == [200, 403, 200]
    for r in answers:
        dates = [v for k, v in r.headers.raw if k.lower() == b"date"]
        assert len(dates) == 1 and dates[0] != VENDOR_DATE.encode(), r.headers.raw
        assert not any(k.lower() == b"server" for k, _ in r.headers.raw)
