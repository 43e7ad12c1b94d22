"""Pipelined requests on one connection (listener/guard.py, `_OneWriteTransport`): whatever the
sequence of HEAD, GET and POST, proxied or /healthz, with or without bodies, sent in one write
or split anywhere, every request gets exactly one well-formed answer, in order.

A held response head is flushed by its own cycle: a HEAD answer (no body write) was once flushed
through the protocol's current cycle — already the next, pipelined, one — and lost."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.stripe_server import FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread, examples

Request = tuple[str, str, bytes]  # method, target, body
Event = h11.Request | h11.Data | h11.EndOfMessage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    with FakeStripeThread(secret=REAL_SECRET) as fake, KeybrakeThread(tmp_path_factory.mktemp("pipe")) as kb:
        kb.add_credential(fake.base_url)
        yield kb.port, kb.issue()["key"]


def _events(request: Request, key: str) -> list[Event]:
    method, target, body = request
    headers = [("host", "keybrake.test"), ("content-length", str(len(body)))]
    if target.startswith("/stripe/"):
        headers.append(("authorization", f"Bearer {key}"))
    if body:
        headers.append(("content-type", "application/x-www-form-urlencoded"))
    events: list[h11.Request | h11.Data | h11.EndOfMessage] = [
        h11.Request(method=method, target=target, headers=headers)
    ]
    if body:
        events.append(h11.Data(data=body))
    return [*events, h11.EndOfMessage()]


def _wire(events: list[Event]) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    return b"".join(conn.send(e) or b"" for e in events)


def _answers(sock: socket.socket, requests: list[Request], key: str) -> list[tuple[int, bytes]]:
    """Each request's answer parsed strictly by h11, in order: (status, body). Fails on anything
    malformed, missing, extra, or on an early close."""
    conn = h11.Connection(h11.CLIENT)
    answers = []
    for i, request in enumerate(requests):
        for e in _events(request, key):
            conn.send(e)
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                assert data, f"closed after {i} of {len(requests)} answers"
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r} for request {i}")
        assert request[0] != "HEAD" or body == b""
        answers.append((status, body))
        conn.start_next_cycle()
    sock.settimeout(0.3)  # nothing more: no extra answer behind the last one
    try:
        extra = sock.recv(65536)
    except TimeoutError:
        extra = b""
    assert extra == b"", f"bytes after the last answer: {extra[:200]!r}"
    return answers


def _send(port: int, requests: list[Request], key: str, cuts: list[int]) -> socket.socket:
    wire = b"".join(_wire(_events(r, key)) for r in requests)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    last = 0
    for cut in sorted({c % (len(wire) + 1) for c in cuts} | {len(wire)}):
        if cut > last:
            sock.sendall(wire[last:cut])
            time.sleep(0.002)  # lets the server see the pieces apart (no assertion on time)
        last = cut
    return sock


def test_a_pipelined_head_then_get_gets_both_answers_in_order(server: tuple[int, str]) -> None:
    port, key = server
    for target in ("/healthz", "/stripe/v1/customers"):
        requests: list[Request] = [("HEAD", target, b""), ("GET", "/healthz", b"")]
        with _send(port, requests, key, []) as sock:
            answers = _answers(sock, requests, key)
        assert answers[0][1] == b"" and answers[1] == (200, b'{"status":"ok"}')


REQUESTS = st.sampled_from(
    [
        ("HEAD", "/healthz", b""),
        ("GET", "/healthz", b""),
        ("POST", "/healthz", b""),
        ("POST", "/healthz", b"a=1"),
        ("HEAD", "/stripe/v1/customers", b""),
        ("GET", "/stripe/v1/customers", b""),
        ("GET", "/stripe/v1/customers?limit=1", b""),
        ("POST", "/stripe/v1/customers", b""),
        ("POST", "/stripe/v1/customers", b"email=a%40example.com&description=pipelined"),
    ]
)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(REQUESTS, min_size=1, max_size=6), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_pipelined_sequences_get_one_well_formed_answer_each_in_order(
    server: tuple[int, str], requests: list[Request], cuts: list[int]
) -> None:
    port, key = server
    with _send(port, requests, key, cuts) as sock:
        answers = _answers(sock, requests, key)
    assert len(answers) == len(requests)
    for (method, target, _), (status, body) in zip(requests, answers, strict=True):
        if target == "/healthz" and method == "GET":
            assert (status, body) == (200, b'{"status":"ok"}')
