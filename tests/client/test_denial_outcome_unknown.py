"""`denial(exc).retryable` after `upstream_timeout` (the vendor may have acted): "retryable only
with the same Idempotency-Key". A vendor that takes no Idempotency-Key (Twilio) cannot replay a
retry, so an orchestrator that follows `retryable` would text (and pay for) the message twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from twilio.base.exceptions import TwilioRestException

from keybrake_client import Keybrake, denial
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioThread
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def test_a_twilio_send_whose_outcome_is_unknown_is_not_called_retryable(
    tmp_path: Path, fake_twilio: FakeTwilioThread
) -> None:
    secret = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
    with KeybrakeThread(tmp_path / "data", upstream_timeout_s=1.0) as kb:
        kb.add_credential(fake_twilio.base_url, name="twilio", secret=secret, vendor="twilio")
        with Keybrake(kb.url, ADMIN_TOKEN, timeout=10) as client:
            with client.run(vendor="twilio", run_id="run-sms-timeout", daily_usd_cap=1) as run:
                tw = run.twilio()
                held = threading.Event()
                fake_twilio.fake.hang = held
                try:
                    tw.messages.create(to="+14155550101", from_="+14155550199", body="shipped")
                    raise AssertionError("the send was not refused")
                except TwilioRestException as exc:
                    d = denial(exc)
                held.set()
                fake_twilio.fake.hang = None
                deadline = time.monotonic() + 10
                while not [r for r in fake_twilio.fake.requests if r.method == "POST"]:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                if d is not None and d.retryable:  # what an orchestrator following `retryable` does
                    tw.messages.create(to="+14155550101", from_="+14155550199", body="shipped")
    assert d is not None and d.code == "upstream_timeout", d
    posts = [r for r in fake_twilio.fake.requests if r.method == "POST"]
    assert not d.retryable and len(posts) == 1, (d, len(posts))
