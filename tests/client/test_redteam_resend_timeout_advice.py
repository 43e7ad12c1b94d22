"""Red team: the client's `denial()` reading a resend-python error after `upstream_timeout`.

A ResendError carries no `keybrake` object (only the answer's `name`, message and headers), so
`denial()` fell back to "resend replays retries" and called every Resend timeout retryable —
also for a send that carried no Idempotency-Key, where the server itself said a retry may send the
email twice (`keybrake.retryable: false`, no `Retry-After`). An agent following `retryable` sends
twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keybrake_client import Keybrake, denial
from tests.harness import ADMIN_TOKEN, KeybrakeThread

MAIL = {"from": "Acme <bot@mail.acme.io>", "to": ["a@example.com"], "subject": "s", "html": "<p>x</p>"}


@pytest.fixture
def slow_resend(tmp_path: Path) -> Iterator[tuple[KeybrakeThread, Any]]:
    import resend

    from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResendThread

    saved = resend.api_key, resend.api_url
    with FakeResendThread() as fake, KeybrakeThread(tmp_path / "data", upstream_timeout_s=0.3) as server:
        server.add_credential(fake.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        fake.fake.delay_seconds = 1.0  # the send is carried out, its answer comes too late
        yield server, fake.fake
    resend.api_key, resend.api_url = saved


@pytest.mark.parametrize("idempotency_key", [None, "order-42-receipt"])
def test_a_resend_timeout_is_retryable_only_under_an_idempotency_key(
    slow_resend: tuple[KeybrakeThread, Any], idempotency_key: str | None
) -> None:
    kb_server, _ = slow_resend
    with Keybrake(kb_server.url, ADMIN_TOKEN, timeout=10) as kb:
        with kb.run(vendor="resend", run_id=f"run-{idempotency_key}", daily_usd_cap=1) as run:
            rs = run.resend()
            options: Any = {"idempotency_key": idempotency_key} if idempotency_key else None
            with pytest.raises(Exception) as caught:
                rs.Emails.send(MAIL, options) if options else rs.Emails.send(MAIL)
    d = denial(caught.value)
    assert d is not None and d.code == "upstream_timeout", caught.value
    assert d.retryable is (idempotency_key is not None), (d, caught.value)
