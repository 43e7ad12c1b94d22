"""Every spelling of an endpoint is one operation, and a call's destinations are more than `To`.

Raw HTTP (and twilio-python where it can express the request) through a running Keybrake against
the fake Twilio, which routes `.json`, `.xml` and no extension as Twilio does; the fake's request
log shows what would have reached Twilio. Spellings that are only refused are tables in
tests/proxy/test_decide_parse.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from keybrake.integrations.twilio import client
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilio, FakeTwilioThread
from tests.harness import KeybrakeThread

SECRET = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
US, UK, FROM = "+14155550100", "+447700900123", "+14155550199"
HOOK = "https://hooks.example.com/twiml/outbound"


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    return kb.issue(policy, vendor="twilio", label="test:caller:run-1")


def posts(t: FakeTwilioThread) -> list[Any]:
    fake: FakeTwilio = t.fake
    return [r for r in fake.requests if r.method == "POST"]


def post(kb: KeybrakeThread, key: dict[str, Any], rest: str, body: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/twilio/2010-04-01/Accounts/{key['id']}/{rest}", data=body, auth=(key["id"], key["key"]), timeout=30
    )


def code(r: httpx.Response) -> str:
    return str(r.json()["details"]["keybrake_code"])


@pytest.mark.parametrize("spelling", ["Messages.xml", "Messages"])
def test_xml_and_bare_message_sends_are_scoped_and_priced_like_json(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread, spelling: str
) -> None:
    key = issue(kbt, allowed_to_prefixes=["+1"], daily_usd_cap=5)
    r = post(kbt, key, spelling, {"To": UK, "From": FROM, "Body": "hi"})
    assert r.status_code == 403 and code(r) == "scope_violation"
    assert "allowed_to_prefixes" in r.json()["message"]
    assert posts(fake_twilio) == []  # nothing reached Twilio

    r = post(kbt, key, spelling, {"To": US, "From": FROM, "Body": "hi"})
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/xml")
    (sent,) = posts(fake_twilio)
    assert sent.path == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/{spelling}"  # the agent's spelling, real SID
    allowed = next(row for row in kbt.audit(key_id=key["id"]) if row["verdict"] == "allowed")
    assert allowed["path"] == f"/2010-04-01/Accounts/{key['id']}/Messages.json"  # classified as the .json send
    assert allowed["request_summary"] == {"destination": "+1 415…", "segments": 1, "num_media": 0, "format": "xml"}
    # An XML answer has no JSON price or SID to reconcile: the estimate is the final cost.
    assert (allowed["cost_source"], allowed["cost_kind"], allowed["cost_usd"]) == ("estimate", "sms", 0.0113)
    usage = kbt.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (0.0113, 0)


def test_endpoint_patterns_match_every_spelling(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, daily_usd_cap=5, allowed_endpoints=["POST /2010-04-01/Accounts/*/Messages.json"])
    for spelling in ("Messages.json", "Messages.xml", "Messages"):
        assert post(kbt, key, spelling, {"To": US, "From": FROM, "Body": "x"}).status_code == 201
    r = httpx.get(f"{kbt.url}/twilio/2010-04-01/Accounts/{key['id']}/Calls", auth=(key["id"], key["key"]))
    assert r.status_code == 403 and code(r) == "endpoint_not_allowed"
    with kbt.admin() as admin:
        r = admin.post(
            "/v1/keys",
            json={"vendor": "twilio", "policy": {"allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.xml"]}},
        )
    assert r.status_code == 422 and "Messages.json" in r.json()["error"]["message"]


def test_twiml_dial_is_a_destination(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    key = issue(kbt, allowed_to_prefixes=["+1"], daily_usd_cap=5)
    twilio = client(kbt.url, key["key"], key["id"])
    with pytest.raises(TwilioRestException) as exc:
        twilio.calls.create(to=US, from_=FROM, twiml="<Response><Dial>+882345678901</Dial></Response>")
    assert exc.value.status == 403 and exc.value.code == 403004  # scope_violation
    assert "Twiml <Dial>" in exc.value.msg and "allowed_to_prefixes" in exc.value.msg
    for twiml in (
        "<Response><Dial><Number>+44 7700 900123</Number></Dial></Response>",
        "<Response><Dial><Sip>sip:anyone@carrier.example</Sip></Dial></Response>",
        "<Response><Dial><Client>alice</Client></Dial></Response>",
        "<Response><Connect><Stream url='wss://x.example'/></Connect></Response>",
        f"<Response><Redirect>{HOOK}</Redirect></Response>",
        "<Response><Gather><Say>Press 1</Say></Gather></Response>",
    ):
        r = post(kbt, key, "Calls.json", {"To": US, "From": FROM, "Twiml": twiml})
        assert r.status_code == 403 and code(r) == "scope_violation", twiml
    r = post(kbt, key, "Calls.json", {"To": US, "From": FROM, "Twiml": "<Response><Dial>+1415"})
    assert r.status_code == 400 and code(r) == "body_invalid"
    assert posts(fake_twilio) == []

    allowed = "<Response><Say>Hi</Say><Dial>+1 212 555 0100</Dial></Response>"
    call = twilio.calls.create(to=US, from_=FROM, twiml=allowed)
    assert call.sid.startswith("CA")
    (sent,) = posts(fake_twilio)
    assert sent.form["Twiml"] == [allowed]


def test_twiml_urls_and_applications_must_be_named(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    app = "AP" + "ab" * 16
    plain = issue(kbt, allowed_to_prefixes=["+1"], daily_usd_cap=50)
    for extra in ({"Url": HOOK}, {"ApplicationSid": app}, {"Twiml": "<Response/>", "FallbackUrl": HOOK}):
        r = post(kbt, plain, "Calls.json", {"To": US, "From": FROM, **extra})
        assert r.status_code == 403 and code(r) == "scope_violation", extra
    # a live call pointed at new TwiML: the same rule
    r = post(kbt, plain, f"Calls/CA{'0' * 32}.json", {"Twiml": "<Response><Dial>+882345678901</Dial></Response>"})
    assert r.status_code == 403 and code(r) == "scope_violation"
    assert posts(fake_twilio) == []

    named = issue(
        kbt,
        allowed_to_prefixes=["+1"],
        allowed_twiml_urls=["https://hooks.example.com/twiml/*"],
        allowed_application_sids=[app],
        daily_usd_cap=50,
    )
    twilio = client(kbt.url, named["key"], named["id"])
    assert twilio.calls.create(to=US, from_=FROM, url=HOOK).sid.startswith("CA")
    assert twilio.calls.create(to=US, from_=FROM, application_sid=app).sid.startswith("CA")
    for escape in (
        "https://hooks.example.com.evil.org/twiml",
        "https://hooks.example.com/twiml/../../evil",  # found by the newcomer run: a prefix left by `..`
        "https://hooks.example.com/twiml/%2e%2e/%2E%2E/evil",
        "https://hooks.example.com/twiml/.%2e/evil",
        "https://hooks.example.com/twiml/a%2f..%2f..%2fevil",
        "https://hooks.example.com/twiml/..\\evil",
    ):
        with pytest.raises(TwilioRestException) as exc:
            twilio.calls.create(to=US, from_=FROM, url=escape)
        assert exc.value.status == 403, escape
    assert [r.form.get("Url", r.form.get("ApplicationSid")) for r in posts(fake_twilio)] == [[HOOK], [app]]


def test_policy_fields_are_validated(kbt: KeybrakeThread) -> None:
    def create(vendor: str, policy: dict[str, Any]) -> httpx.Response:
        with kbt.admin() as admin:
            return admin.post("/v1/keys", json={"vendor": vendor, "policy": policy})

    scoped = {"allowed_to_prefixes": ["+1"]}
    bad = [
        ({**scoped, "allowed_twiml_urls": ["http://hooks.example.com/x"]}, "allowed_twiml_urls", "https://"),
        ({**scoped, "allowed_twiml_urls": ["https://hooks.example.com*"]}, "allowed_twiml_urls", "pin the host"),
        ({**scoped, "allowed_twiml_urls": ["https://a*b.example.com/"]}, "allowed_twiml_urls", "last character"),
        ({**scoped, "allowed_twiml_urls": ["https://hooks.example.com/twiml/../*"]}, "allowed_twiml_urls", "dot"),
        ({**scoped, "allowed_application_sids": ["AP123"]}, "allowed_application_sids", "application SID"),
        ({"allowed_twiml_urls": [HOOK]}, "allowed_twiml_urls", "allowed_to_prefixes"),
        ({"allowed_application_sids": ["AP" + "0" * 32]}, "allowed_application_sids", "allowed_to_prefixes"),
    ]
    for policy, field, words in bad:
        r = create("twilio", policy)
        assert r.status_code == 422, policy
        assert r.json()["error"]["field"] == f"policy.{field}" and words in r.json()["error"]["message"], r.text
    r = create("twilio", {**scoped, "allowed_twiml_urls": [HOOK, "https://hooks.example.com/*"]})
    assert r.status_code == 201
    policy = r.json()["policy"]
    assert policy["allowed_twiml_urls"] == [HOOK, "https://hooks.example.com/*"]
    assert policy["allowed_application_sids"] is None
    # on another vendor's key the field is not supported at all (not "add allowed_to_prefixes")
    kbt.add_credential("https://api.stripe.com", name="s", secret="sk_test_" + "x" * 24)
    r = create("stripe", {"allowed_twiml_urls": [HOOK]})
    assert r.status_code == 422 and "not supported for stripe keys" in r.json()["error"]["message"], r.text
