"""Red team: an `Idempotency-Key` header sent to a vendor that ignores it.

A retry under the same Idempotency-Key reserves nothing and costs nothing in Keybrake's books
because the vendor answers it with the first outcome. Where the vendor takes no such header
(Postmark, SendGrid, Segment, a file-defined vendor naming none) or ignores it on the endpoint
(Resend outside `POST /emails` and `POST /emails/batch`), the "retry" is a second action: it must
be reserved, counted and capped like any other request, and a timeout must not be advised as safe
to retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamOutcomeUnknown
from keybrake.proxy.outcome import transport_failure
from keybrake.vendors import build_vendors
from keybrake.vendors.base import Estimate, VendorRequest
from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, FakePostmark, FakePostmarkThread
from tests.harness import KeybrakeThread

SENDER = "Acme <bot@mail.acme.io>"
VENDORS = build_vendors()


@pytest.fixture
def fake_pm() -> Iterator[FakePostmark]:
    with FakePostmarkThread() as t:
        yield t.fake


@pytest.fixture
def kb(tmp_path: Path, fake_pm: FakePostmark) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_pm.base_url, name="postmark", secret=DEFAULT_SERVER_TOKEN, vendor="postmark")
        yield server


def _send(kb: KeybrakeThread, key: dict[str, Any], idem: str) -> httpx.Response:
    body = {"From": SENDER, "To": "a@example.com", "Subject": "Your receipt", "TextBody": "Thanks!"}
    headers = {"X-Postmark-Server-Token": key["key"], "Idempotency-Key": idem}
    return httpx.post(f"{kb.url}/postmark/email", json=body, headers=headers, timeout=30)


def test_an_idempotency_key_postmark_ignores_does_not_make_a_second_send_free(
    kb: KeybrakeThread, fake_pm: FakePostmark
) -> None:
    key = kb.issue({"daily_send_cap": 1, "daily_usd_cap": 1}, vendor="postmark", label="test:mailer:run-1")
    first = _send(kb, key, "same-key")
    assert first.status_code == 200, first.text
    second = _send(kb, key, "same-key")
    sent = [r for r in fake_pm.requests if r.method == "POST"]
    # Postmark takes no Idempotency-Key: the second request is a second email, past the send cap of 1.
    assert second.status_code == 429, (second.status_code, len(sent))
    assert len(sent) == 1
    usage = kb.key(key["id"])["usage"]
    assert usage["daily_sends"]["used"] == 1


RESEND_NOT_REPLAYED = [
    ("POST", "/broadcasts/b_1/send"),
    ("POST", "/broadcasts"),
    ("POST", "/audiences/a_1/contacts"),
    ("POST", "/contacts"),
    ("POST", "/emails/e_1/cancel"),
]


def _resend_request(method: str, path: str, body: bytes) -> VendorRequest:
    req = ProxyRequest(
        method=method,
        raw_path=f"/resend{path}".encode(),
        query=b"",
        headers=(("content-type", "application/json"), ("idempotency-key", "k")),
        body=body,
        client="127.0.0.1",
    )
    return VENDORS["resend"].parse(req, tuple(path.strip("/").split("/")))


@settings(max_examples=50, deadline=None)
@given(where=st.sampled_from(RESEND_NOT_REPLAYED), name=st.text("abcdefghij", min_size=1, max_size=8))
def test_resend_replays_a_retry_only_on_its_two_send_endpoints(where: tuple[str, str], name: str) -> None:
    """Resend: "Idempotency keys are currently supported on the POST /emails and the POST
    /emails/batch endpoints". Elsewhere a request under a repeated key is a second action."""
    vreq = _resend_request(*where, f'{{"name": "{name}"}}'.encode())
    assert VENDORS["resend"].fingerprint(vreq) is None


def test_resend_still_replays_a_retry_of_a_send() -> None:
    body = b'{"from": "a@mail.acme.io", "to": "b@example.com", "subject": "s", "text": "t"}'
    assert VENDORS["resend"].fingerprint(_resend_request("POST", "/emails", body)) is not None
    assert VENDORS["resend"].fingerprint(_resend_request("POST", "/emails/batch", b"[" + body + b"]")) is not None


@settings(max_examples=50, deadline=None)
@given(where=st.sampled_from(RESEND_NOT_REPLAYED), name=st.text("abcdefghij", min_size=1, max_size=8))
def test_a_timeout_where_resend_ignores_the_key_is_not_advised_as_safe_to_retry(
    where: tuple[str, str], name: str
) -> None:
    vreq = _resend_request(*where, f'{{"name": "{name}"}}'.encode())
    resend = VENDORS["resend"]
    exc = UpstreamOutcomeUnknown("read timeout", timeout=True, elapsed_ms=30_000.0)
    honoured = resend.fingerprint(vreq) is not None  # as the pipeline decides it (proxy/forward.py)
    refusal, _ = transport_failure(exc, resend, "k", 500, Estimate("priced", 500, "email"), honoured=honoured)
    assert (
        not refusal.retryable and "is safe" not in refusal.message and "ignores the Idempotency-Key" in refusal.message
    )
    body = b'{"from": "a@mail.acme.io", "to": "b@example.com", "subject": "s", "text": "t"}'
    send = _resend_request("POST", "/emails", body)
    honoured = resend.fingerprint(send) is not None
    refusal, _ = transport_failure(exc, resend, "k", 500, Estimate("priced", 500, "email"), honoured=honoured)
    assert refusal.retryable
