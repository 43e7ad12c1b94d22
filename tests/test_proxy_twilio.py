"""twilio-python through a running Keybrake against a fake Twilio built from Twilio's spec."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from keybrake.integrations.twilio import KeybrakeTwilioError, client
from tests.fakes.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeTwilio,
    FakeTwilioThread,
)
from tests.harness import KeybrakeThread, wait_for

SECRET = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
TO, FROM = "+14155550100", "+14155550199"


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    return kb.issue(policy, vendor="twilio", label="test:notifier:run-1")


def fake(t: FakeTwilioThread) -> FakeTwilio:
    return t.fake


def raw_send(
    kb: KeybrakeThread, key: dict[str, Any], body: dict[str, str], *, account: str | None = None, auth: Any = None
) -> httpx.Response:
    account = account or key["id"]
    return httpx.post(
        f"{kb.url}/twilio/2010-04-01/Accounts/{account}/Messages.json",
        data=body,
        auth=auth if auth is not None else (key["id"], key["key"]),
        timeout=30,
    )


def test_sms_send_swaps_credentials_then_reconciles_the_real_price(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    key = issue(kbt, daily_usd_cap=5, allowed_to_prefixes=["+1"])
    twilio = client(kbt.url, key["key"])  # learns the key id from Keybrake
    msg = twilio.messages.create(to=TO, from_=FROM, body="Your order shipped")
    assert msg.sid.startswith("SM") and msg.price is None

    # the send; the reconciler (every 0.2 s here) may already have fetched the message after it
    seen = [r for r in fake(fake_twilio).requests if r.method == "POST"][-1]
    assert seen.path == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    assert (seen.username, seen.password) == (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    everything = json.dumps([seen.headers, seen.body.decode(), seen.path, seen.query])
    assert key["key"] not in everything and key["id"] not in everything

    (row,) = kbt.audit(key_id=key["id"])
    assert row["verdict"] == "allowed" and row["vendor_object_id"] == msg.sid
    assert (row["cost_source"], row["cost_kind"], row["cost_usd"]) == ("estimate", "sms", 0.0113)
    assert row["request_summary"] == {"destination": "+1 415…", "segments": 1, "num_media": 0}
    assert row["vendor_request_id"].startswith("RQ")
    usage = kbt.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (0, 0.0113)  # the estimate stays reserved

    fake(fake_twilio).set_price(msg.sid, "-0.00790")
    row = wait_for(lambda: next((r for r in kbt.audit(key_id=key["id"]) if r["cost_source"] == "response"), None))
    assert row["cost_usd"] == 0.0079 and row["settled_by"] == "reconciliation"
    usage = kbt.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (0.0079, 0)
    lookups = [r for r in fake(fake_twilio).requests if r.method == "GET"]
    assert lookups and lookups[-1].path == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{msg.sid}.json"


def test_destination_prefixes_are_checked_on_the_normalised_number(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    key = issue(kbt, allowed_to_prefixes=["+1"], default_calling_code="+1", daily_usd_cap=5)
    twilio = client(kbt.url, key["key"], key["id"])
    for to in ("+44 20 7946 0958", "+442079460958", "0044 20 7946 0958", "whatsapp:+442079460958", "sip:a@b.c"):
        with pytest.raises(TwilioRestException) as exc:
            twilio.messages.create(to=to, from_=FROM, body="hi")
        assert exc.value.status == 403 and exc.value.code == 403004  # scope_violation
        assert "allowed_to_prefixes" in exc.value.msg or "E.164" in exc.value.msg or "channel" in exc.value.msg
    assert not [r for r in fake(fake_twilio).requests if r.method == "POST"]

    msg = twilio.messages.create(to="(415) 555-0100", from_=FROM, body="formatted, not bypassed")
    assert msg.sid
    (sent,) = [r for r in fake(fake_twilio).requests if r.method == "POST"]
    assert sent.form["To"] == ["(415) 555-0100"]  # checked normalised, forwarded unchanged
    refused = [r for r in kbt.audit(key_id=key["id"]) if r["verdict"] == "denied_scope_violation"]
    assert len(refused) == 5


@pytest.mark.timing
def test_daily_send_cap_holds_under_50_concurrent_sends(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, daily_send_cap=20, daily_usd_cap=50)
    twilio = client(kbt.url, key["key"], key["id"])

    def send(i: int) -> int | str:
        try:
            twilio.messages.create(to=TO, from_=FROM, body=f"message {i}")
            return 201
        except TwilioRestException as exc:
            code: int | str = exc.code  # twilio-python ships no type hints
            return code

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(send, range(50)))
    assert outcomes.count(201) == 20
    assert outcomes.count(429003) == 30  # send_cap_exceeded
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 20
    sends = kbt.key(key["id"])["usage"]["daily_sends"]
    assert (sends["limit"], sends["used"] + sends["reserved"]) == (20, 20)


def test_a_twilio_refusal_does_not_count_as_a_send(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, daily_send_cap=1, daily_usd_cap=5)
    fake(fake_twilio).fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    r = raw_send(kbt, key, {"To": TO, "From": FROM, "Body": "a"})
    assert r.status_code == 400 and r.json()["code"] == 21211  # Twilio's own answer, passed through
    sends = kbt.key(key["id"])["usage"]["daily_sends"]
    assert (sends["used"], sends["reserved"]) == (0, 0)
    assert raw_send(kbt, key, {"To": TO, "From": FROM, "Body": "b"}).status_code == 201
    sends = kbt.key(key["id"])["usage"]["daily_sends"]
    assert sends["used"] + sends["reserved"] == 1  # reserved until the price is reconciled
    r = raw_send(kbt, key, {"To": TO, "From": FROM, "Body": "c"})
    assert r.status_code == 429 and r.json()["code"] == 429003
    assert r.headers["x-keybrake-cap"] == "key:daily_send_cap"


def test_dedup_replays_the_first_answer(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, dedup_window_seconds=60, daily_usd_cap=5)
    body = {"To": TO, "From": FROM, "Body": "Your code is 1234"}
    answers = [raw_send(kbt, key, body) for _ in range(5)]
    assert [a.status_code for a in answers] == [201] * 5
    assert len({a.json()["sid"] for a in answers}) == 1
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 1
    first = answers[0].headers["x-keybrake-request-id"]
    assert "x-keybrake-deduplicated" not in answers[0].headers
    for a in answers[1:]:
        assert a.headers["x-keybrake-deduplicated"] == "true"
        assert a.headers["x-keybrake-deduplicated-of"] == first
    rows = kbt.audit(key_id=key["id"])
    dups = [r for r in rows if r["verdict"] == "deduplicated"]
    assert len(dups) == 4 and {r["dedup_of"] for r in dups} == {first}
    assert all(r["cost_usd"] == 0 for r in dups)
    # the same number formatted differently is the same send; another body is not
    assert raw_send(kbt, key, {**body, "To": "+1 (415) 555-0100"}).headers.get("x-keybrake-deduplicated") == "true"
    assert raw_send(kbt, key, {**body, "Body": "Your code is 9999"}).status_code == 201
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 2
    # the replayed body is sealed in the store, never copied into an audit row
    assert "1234" not in json.dumps(kbt.audit(key_id=key["id"]))


def test_concurrent_duplicates_wait_for_the_first_answer(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, dedup_window_seconds=60, daily_usd_cap=5)
    fake(fake_twilio).delay_seconds = 0.5
    body = {"To": TO, "From": FROM, "Body": "once"}
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: raw_send(kbt, key, body), range(5)))
    assert [a.status_code for a in answers] == [201] * 5
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 1
    assert sum(a.headers.get("x-keybrake-deduplicated") == "true" for a in answers) == 4


def test_duplicate_of_an_unknown_outcome_is_refused(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, dedup_window_seconds=60, daily_usd_cap=5)
    fake(fake_twilio).fail_next(500)
    body = {"To": TO, "From": FROM, "Body": "maybe sent"}
    assert raw_send(kbt, key, body).status_code == 500
    again = raw_send(kbt, key, body)
    assert again.status_code == 409
    assert again.json()["details"]["keybrake_code"] == "duplicate_outcome_unknown"
    assert again.json()["code"] == 409002
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 1


def test_calls_get_the_policy_time_limit(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, max_call_seconds=300, daily_usd_cap=5)
    twilio = client(kbt.url, key["key"], key["id"])
    call = twilio.calls.create(to=TO, from_=FROM, url="https://example.com/twiml", time_limit=3600)
    assert call.sid.startswith("CA")
    sent = [r for r in fake(fake_twilio).requests if r.method == "POST"][-1]
    assert sent.form["TimeLimit"] == ["300"]
    (row,) = kbt.audit(key_id=key["id"])
    # 5 minutes × ($0.014 to the US + $0.50, the dearest leg the unseen TwiML at Url could dial)
    assert (row["cost_kind"], row["reserved_usd"]) == ("call", 2.57)


def test_a_calls_dialled_legs_are_reserved_and_reconciled(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    """Twilio bills each leg a call's TwiML dials as a child call: a key without destination
    scope must still count them (the parent's own price leaves them out)."""
    key = issue(kbt, daily_usd_cap=5)
    twiml = "<Response><Dial><Number>+442079460958</Number></Dial></Response>"
    call = client(kbt.url, key["key"], key["id"]).calls.create(to=TO, from_=FROM, twiml=twiml, time_limit=120)
    (row,) = kbt.audit(key_id=key["id"])
    assert row["reserved_usd"] == 0.108  # 2 minutes × ($0.014 to the US + $0.04 for the GB leg)
    twilio = fake(fake_twilio)
    leg = twilio.dial_leg(call.sid, "+442079460958")
    twilio.set_price(call.sid, "-0.02800", duration=120)
    assert kbt.audit(key_id=key["id"])[0]["cost_source"] == "estimate"  # the leg has no price yet
    twilio.set_price(leg, "-0.08000", duration=110)
    row = wait_for(lambda: next((r for r in kbt.audit(key_id=key["id"]) if r["cost_source"] == "response"), None))
    assert row["cost_usd"] == 0.108 and row["settled_by"] == "reconciliation"
    lookups = [r for r in twilio.requests if r.method == "GET"]
    assert any(r.path.endswith("/Calls.json") and f"ParentCallSid={call.sid}" in r.query for r in lookups)
    usage = kbt.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (0.108, 0)


def test_other_accounts_and_bad_auth_are_refused(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, daily_usd_cap=5)
    body = {"To": TO, "From": FROM, "Body": "x"}
    other = raw_send(kbt, key, body, account="AC" + "9" * 32)
    assert other.status_code == 403 and other.json()["details"]["keybrake_code"] == "scope_violation"
    someone = raw_send(kbt, key, body, account="vk_someone_else")
    assert someone.status_code == 403
    real = raw_send(kbt, key, body, account=DEFAULT_ACCOUNT_SID)  # the real SID is accepted too
    assert real.status_code == 201

    cases = {
        "real auth token": (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
        "no password": (key["id"], ""),
    }
    for why, auth in cases.items():
        r = raw_send(kbt, key, body, auth=auth)
        assert r.status_code == 401, why
        assert r.json()["code"] in (401001, 401002), why
    r = httpx.post(
        f"{kbt.url}/twilio/2010-04-01/Accounts/{key['id']}/Messages.json",
        data=body,
        headers={"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    )
    assert r.status_code == 401 and "password" in r.json()["message"]
    missing_to = raw_send(kbt, key, {"From": FROM, "Body": "x"})
    assert missing_to.status_code == 400 and missing_to.json()["details"]["keybrake_code"] == "body_invalid"
    assert "'To'" in missing_to.json()["message"]
    as_json = httpx.post(
        f"{kbt.url}/twilio/2010-04-01/Accounts/{key['id']}/Messages.json",
        json=body,
        auth=(key["id"], key["key"]),
    )
    assert as_json.status_code == 415
    assert len([r for r in fake(fake_twilio).requests if r.method == "POST"]) == 1  # only the real-SID send


def test_sdk_errors_carry_keybrake_messages(kbt: KeybrakeThread) -> None:
    key = issue(kbt, daily_usd_cap=5)
    kbt.admin().delete(f"/v1/keys/{key['id']}", params={"reason": "run finished"})
    twilio = client(kbt.url, key["key"], key["id"])
    with pytest.raises(TwilioRestException) as exc:
        twilio.messages.create(to=TO, from_=FROM, body="late")
    assert exc.value.status == 401 and exc.value.code == 401003
    assert "revoked" in exc.value.msg and "run finished" in exc.value.msg
    with pytest.raises(KeybrakeTwilioError):
        client(kbt.url, key["key"])  # the key id lookup is refused for a revoked key


def test_account_fetch_is_guarded_and_redacts_the_auth_token(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    plain = issue(kbt, daily_usd_cap=5)
    r = httpx.get(f"{kbt.url}/twilio/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json", auth=(plain["id"], plain["key"]))
    assert r.status_code == 403 and r.json()["details"]["keybrake_code"] == "endpoint_guarded"

    named = issue(kbt, daily_usd_cap=5, allowed_endpoints=[f"GET /2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json"])
    r = httpx.get(f"{kbt.url}/twilio/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json", auth=(named["id"], named["key"]))
    assert r.status_code == 200
    assert r.json()["auth_token"] == "[redacted by keybrake]"
    assert DEFAULT_AUTH_TOKEN not in r.text
    (row,) = kbt.audit(key_id=named["id"])
    assert row["redacted_fields"] == ["auth_token"]
    assert DEFAULT_AUTH_TOKEN not in kbt.logs.text()


def test_helper_refuses_other_twilio_hosts(kbt: KeybrakeThread) -> None:
    key = issue(kbt, daily_usd_cap=5)
    twilio = client(kbt.url, key["key"], key["id"])
    with pytest.raises(KeybrakeTwilioError):
        twilio.messaging.v1.services.list()


def test_api_key_credentials_and_policy_validation(tmp_path: Path, fake_twilio: FakeTwilioThread) -> None:
    from tests.fakes.twilio_server import DEFAULT_API_KEY_SECRET, DEFAULT_API_KEY_SID

    secret = {
        "account_sid": DEFAULT_ACCOUNT_SID,
        "api_key_sid": DEFAULT_API_KEY_SID,
        "api_key_secret": DEFAULT_API_KEY_SECRET,
    }
    with KeybrakeThread(tmp_path / "kb") as kb:
        cred = kb.add_credential(fake_twilio.base_url, name="tw-key", secret=secret, vendor="twilio")
        assert DEFAULT_API_KEY_SECRET not in json.dumps(cred)
        key = kb.issue({"daily_usd_cap": 1, "allowed_to_prefixes": ["+1", "sip:"]}, vendor="twilio")
        msg = client(kb.url, key["key"], key["id"]).messages.create(to=TO, from_=FROM, body="via API key")
        assert msg.sid
        seen = [r for r in fake(fake_twilio).requests if r.method == "POST"][-1]  # not a reconciler's GET
        assert (seen.username, seen.password) == (DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET)
        assert DEFAULT_ACCOUNT_SID in seen.path

        with kb.admin() as admin:
            bad = {
                "allowed_to_prefixes": ["1"],
                "default_calling_code": "+999",
                "max_call_seconds": 0,
                "allowed_to_domains": ["example.com"],
            }
            for name, value in bad.items():
                r = admin.post("/v1/keys", json={"vendor": "twilio", "policy": {name: value}})
                assert r.status_code == 422, name
                assert name in r.text
            r = admin.post("/v1/keys", json={"vendor": "stripe", "policy": {"daily_send_cap": 5}})
            assert r.status_code == 422  # no stripe credential, or a field stripe keys do not take
            r = admin.post("/v1/credentials", json={"vendor": "twilio", "name": "x", "secret": "AC123:token"})
            assert r.status_code == 422 and "account_sid" in r.text
