"""`denial(exc).retryable` after `upstream_timeout` (the vendor may have acted): "retryable only
with the same Idempotency-Key". A vendor that takes no Idempotency-Key (Twilio) cannot replay a
retry, so an orchestrator that follows `retryable` would text (and pay for) the message twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.base.exceptions import TwilioRestException

from keybrake_client import Keybrake, denial
from keybrake_client.denial import CODES, OUTCOME_UNKNOWN
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


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(sorted(CODES)), key=st.one_of(st.none(), st.text(min_size=1, max_size=40)))
def test_raw_http_errors_are_retryable_after_an_unknown_outcome_only_under_an_idempotency_key(
    code: str, key: str | None
) -> None:
    status, _, retryable = CODES[code]
    headers = {} if key is None else {"Idempotency-Key": key.encode("utf-8").hex()}
    request = httpx.Request("POST", "http://127.0.0.1:1/stripe/v1/charges", headers=headers)
    body = {"error": {"type": "keybrake_error", "code": code, "message": "m"}}
    response = httpx.Response(status, json=body, request=request)
    exc = httpx.HTTPStatusError("refused", request=request, response=response)
    d = denial(exc)
    assert d is not None and d.code == code
    assert d.retryable == (retryable and (code not in OUTCOME_UNKNOWN or key is not None))
