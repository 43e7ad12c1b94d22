"""The response head and body in one write (listener/guard.py, `_OneWriteTransport`): what each
client sees is unchanged — plain answers, HEAD, 100 Continue, streamed bodies, an app that
fails mid-response — and the head and first body bytes go out together."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from keybrake.config import Settings
from keybrake.listener import bind_listeners, server_config
from keybrake.listener.guard import _OneWriteTransport
from tests.test_listener import read_response

BODY = b'{"object":"charge"}'


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"transfer-encoding", b"chunked")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fail":
        raise RuntimeError("mid-response")
    await send({"type": "http.response.body", "body": BODY})


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    settings = Settings(data_dir=tmp_path).with_overrides(host="127.0.0.1", port=0)
    listeners = bind_listeners(settings)
    server = uvicorn.Server(server_config(_app, settings, listeners))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=listeners.sockets)), daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    try:
        yield listeners.sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _ask(port: int, request: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    return s


def test_answers_are_whole_and_keep_alive_still_works(port: int) -> None:
    with _ask(port, b"POST /v1/charges HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}") as s:
        for _ in range(3):
            status, headers, body = read_response(s)
            assert (status, headers["content-type"], body) == (200, "application/json", BODY)
            s.sendall(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")


def test_a_head_request_gets_its_head(port: int) -> None:
    with _ask(port, b"HEAD /v1/charges HTTP/1.1\r\nhost: x\r\n\r\n") as s:
        s.settimeout(5)
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")
        assert b"content-length: " + str(len(BODY)).encode() in data


def test_100_continue_goes_before_the_body_is_sent(port: int) -> None:
    head = b"POST /v1/charges HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    with _ask(port, head) as s:
        s.settimeout(5)
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"{}")
        assert read_response(s)[2] == BODY


def test_a_streamed_body_arrives_whole(port: int) -> None:
    with _ask(port, b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n") as s:
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")


def test_an_app_failing_after_the_head_closes_the_connection(port: int) -> None:
    with _ask(port, b"GET /fail HTTP/1.1\r\nhost: x\r\n\r\n") as s:
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data == b"" or data.startswith(b"HTTP/1.1 200 ")  # the head, then the close: never a body


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


class _Cycle:
    response_started = False


def test_the_head_goes_out_with_the_first_body_write() -> None:
    inner, cycle = _Transport(), _Cycle()
    t = _OneWriteTransport(inner, cycle)  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts: at once
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    t.write(b"HEAD\r\n\r\n")
    assert len(inner.writes) == 1
    t.write(b"body")
    t.write(b"more")
    assert inner.writes[1:] == [b"HEAD\r\n\r\nbody", b"more"]
    assert t.get_extra_info("peername") == "info:peername"


def test_a_held_head_is_flushed_by_close_and_by_flush() -> None:
    for end in ("close", "flush"):
        inner, cycle = _Transport(), _Cycle()
        t = _OneWriteTransport(inner, cycle)  # type: ignore[arg-type]
        cycle.response_started = True
        t.write(b"HEAD\r\n\r\n")
        getattr(t, end)()
        assert inner.writes == [b"HEAD\r\n\r\n"]
        assert inner.closed is (end == "close")
