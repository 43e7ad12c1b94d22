"""Twilio's one parse, scope, estimate, cost, path swap and redaction, as pure functions."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import VendorRequest
from keybrake.vendors.rates import RatesError, load_twilio_rates
from keybrake.vendors.sms import segments
from keybrake.vendors.twilio import REPEATABLE, Twilio
from keybrake.vendors.twilio_errors import twilio_code
from keybrake.vendors.twilio_pricing import TwilioScope

# Extracted from Twilio's OpenAPI spec (provenance inside the file).
SPEC_ARRAYS = Path(__file__).resolve().parents[1] / "fixtures" / "twilio_form_arrays.json"
RATES = {"usd": Decimal(1), "gbp": Decimal("1.27")}
FORM = ("content-type", "application/x-www-form-urlencoded")
T = Twilio()
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "fedcba9876543210" * 2
SECRET = json.dumps({"account_sid": SID, "auth_token": TOKEN}).encode()
MESSAGES = "/2010-04-01/Accounts/vk_me/Messages.json"
CALLS = "/2010-04-01/Accounts/vk_me/Calls.json"


def vreq(method: str, path: str, body: bytes = b"", query: bytes = b"") -> VendorRequest:
    segs = tuple(path.strip("/").split("/"))
    return T.parse(ProxyRequest(method, path.encode(), query, (FORM,), body, "127.0.0.1"), segs)


def scoped(r: VendorRequest, policy: Policy = Policy()) -> VendorRequest:
    return r.scoped(T.check_scope(policy, r))


def test_segments_gsm7_ucs2_and_escapes() -> None:
    assert segments("") == 1
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2
    assert segments("a" * 306) == 2
    assert segments("a" * 307) == 3
    assert segments("€" * 80) == 1  # extension characters take two septets
    assert segments("€" * 81) == 2
    assert segments("é" * 160) == 1  # é is in the GSM basic table
    assert segments("ś" * 70) == 1  # not GSM: UCS-2
    assert segments("ś" * 71) == 2
    assert segments("😀" * 35) == 1  # surrogate pairs take two UCS-2 units
    assert segments("😀" * 36) == 2


def test_repeatable_parameters_match_the_spec() -> None:
    """Twilio repeats a parameter only where its spec types it as an array."""
    arrays = set(json.loads(SPEC_ARRAYS.read_text())["array_form_parameters"])
    assert arrays == REPEATABLE


def test_message_estimate_by_country_and_segments() -> None:
    us = T.estimate(scoped(vreq("POST", MESSAGES, b"To=%2B14155550100&From=%2B1415&Body=" + b"a" * 200)), RATES)
    assert (us.pricing, us.amount, us.cost_kind, us.sends) == ("priced", 2 * 11_300, "sms", 1)
    gb = T.estimate(scoped(vreq("POST", MESSAGES, b"To=%2B442079460958&From=x&Body=hi")), RATES)
    assert gb.amount == 52_400
    unknown = T.estimate(scoped(vreq("POST", MESSAGES, b"To=%2B8613800138000&From=x&Body=hi")), RATES)
    assert unknown.amount == 200_000  # the deliberately high default for unlisted countries
    mms = T.estimate(scoped(vreq("POST", MESSAGES, b"To=%2B14155550100&From=x&MediaUrl=a&MediaUrl=b")), RATES)
    assert (mms.amount, mms.cost_kind) == (27_000, "mms")


def test_call_time_limit_is_capped_and_set() -> None:
    r = scoped(
        vreq("POST", CALLS, b"To=%2B14155550100&From=%2B1&Url=https%3A%2F%2Fx"),
        Policy(vendor_data={"max_call_seconds": 120}),
    )
    unseen = 500_000  # TwiML at a Url may dial anywhere: the dearest per-minute rate of the table
    assert T.estimate(r, RATES).amount == 2 * (14_000 + unseen)
    assert (
        T.upstream_body(r, r_body := b"To=%2B14155550100&From=%2B1&Url=https%3A%2F%2Fx") == r_body + b"&TimeLimit=120"
    )
    body = b"To=%2B14155550100&TimeLimit=7200&From=%2B1&Url=u"
    r = scoped(vreq("POST", CALLS, body))
    assert T.upstream_body(r, body) == b"To=%2B14155550100&From=%2B1&Url=u&TimeLimit=600"
    assert T.estimate(r, RATES).amount == 10 * (14_000 + unseen)
    body = b"To=%2B14155550100&TimeLimit=61&From=%2B1&Url=u"
    r = scoped(vreq("POST", CALLS, body))
    assert T.upstream_body(r, body) == body  # within the cap: forwarded unchanged
    assert T.estimate(r, RATES).amount == 2 * (14_000 + unseen)


@pytest.mark.parametrize(
    ("twiml", "leg_rate"),
    [
        ("<Response><Say>hello</Say></Response>", 0),  # dials nothing: the parent leg only
        ("<Response><Dial>+14155550123</Dial></Response>", 14_000),
        ("<Response><Dial><Number>+442079460958</Number><Number>+14155550123</Number></Dial></Response>", 40_000),
        ("<Response><Dial><Sip>sip:a@b.example</Sip></Dial></Response>", 500_000),  # not a number: the default
        ("<Response><Redirect>https://x.example/more</Redirect></Response>", 500_000),  # unseen TwiML
    ],
)
def test_a_calls_dialled_legs_are_reserved(twiml: str, leg_rate: int) -> None:
    """Twilio bills each dialled leg as a child call; together they last at most as long as the call."""
    body = urlencode({"To": "+14155550100", "From": "+1", "Twiml": twiml, "TimeLimit": "120"}).encode()
    r = scoped(vreq("POST", CALLS, body))
    assert T.estimate(r, RATES).amount == 2 * (14_000 + leg_rate)
    with pytest.raises(Denial):
        scoped(vreq("POST", CALLS, b"To=%2B14155550100&TimeLimit=-5&From=%2B1&Url=u"))
    with pytest.raises(Denial):
        vreq("POST", CALLS, b"To=%2B14155550100&From=%2B1&Url=u", query=b"TimeLimit=99999")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"From=%2B1&Body=hi", "body_invalid"),  # no To
        (b"to=%2B14155550100&From=%2B1&Body=hi", "body_invalid"),  # wrong case
        (b"To=%2B14155550100&To=%2B14155550101&From=%2B1&Body=hi", "param_ambiguous"),
        (b"To=%2B14155550100&From=%2B1", "body_invalid"),  # nothing to send
        (b"To=%2B14155550100&From=%2B1&Body=%FF", "body_invalid"),  # not UTF-8
    ],
)
def test_bad_bodies_are_refused(body: bytes, code: str) -> None:
    with pytest.raises(Denial) as exc:
        vreq("POST", MESSAGES, body)
    assert exc.value.code == code


def test_json_bodies_are_refused() -> None:
    with pytest.raises(Denial) as exc:
        T.parse(
            ProxyRequest("POST", MESSAGES.encode(), b"", (("content-type", "application/json"),), b"{}", ""),
            tuple(MESSAGES.strip("/").split("/")),
        )
    assert exc.value.code == "unsupported_media_type"


def test_destination_scope() -> None:
    policy = Policy(vendor_data={"allowed_to_prefixes": ["+1"], "default_calling_code": "+1"})
    assert scoped(vreq("POST", MESSAGES, b"To=%28415%29+555-0100&From=x&Body=hi"), policy).scope == TwilioScope(
        "+14155550100"
    )
    for to in (b"%2B44+20+7946+0958", b"0044207946095", b"whatsapp%3A%2B442079460958", b"sip%3Aa%40b.c"):
        with pytest.raises(Denial) as exc:
            scoped(vreq("POST", MESSAGES, b"To=" + to + b"&From=x&Body=hi"), policy)
        assert exc.value.code == "scope_violation"


def test_account_segment_is_swapped_or_refused() -> None:
    r = vreq("GET", "/2010-04-01/Accounts/vk_me/Messages/SMx.json")
    assert T.upstream_path(r, b"/2010-04-01/Accounts/vk_me/Messages/SMx.json", SECRET, "vk_me") == (
        f"/2010-04-01/Accounts/{SID}/Messages/SMx.json".encode()
    )
    r = vreq("GET", f"/2010-04-01/Accounts/{SID}.json")
    assert T.upstream_path(r, f"/2010-04-01/Accounts/{SID}.json".encode(), SECRET, "vk_me").endswith(
        f"{SID}.json".encode()
    )
    for other in ("AC" + "1" * 32, "vk_someone_else", "Accounts"):
        r = vreq("GET", f"/2010-04-01/Accounts/{other}/Messages.json")
        with pytest.raises(Denial) as exc:
            T.upstream_path(r, f"/2010-04-01/Accounts/{other}/Messages.json".encode(), SECRET, "vk_me")
        assert exc.value.code == "scope_violation"


def test_auth_headers_use_the_real_credential() -> None:
    ((name, value),) = T.upstream_headers(SECRET)
    assert name == "authorization"
    assert base64.b64decode(value.split()[1]).decode() == f"{SID}:{TOKEN}"
    key_secret = json.dumps({"account_sid": SID, "api_key_sid": "SK" + "a" * 32, "api_key_secret": "B" * 32}).encode()
    assert (
        base64.b64decode(T.upstream_headers(key_secret)[0][1].split()[1]).decode() == "SK" + "a" * 32 + ":" + "B" * 32
    )


@pytest.mark.parametrize(
    "secret",
    [
        "AC123",
        {"account_sid": SID},
        {"account_sid": SID, "auth_token": "short"},
        {"account_sid": "AX" + "0" * 32, "auth_token": TOKEN},
        {"account_sid": SID, "auth_token": TOKEN, "extra": "x"},
        {"account_sid": SID, "api_key_sid": "SK" + "a" * 32},
    ],
)
def test_bad_secrets_are_refused(secret: object) -> None:
    with pytest.raises(ValueError):
        T.validate_secret(secret)


def test_secret_hint_never_holds_the_token() -> None:
    hint = T.validate_secret({"account_sid": SID, "auth_token": TOKEN}).hint
    assert TOKEN not in hint and TOKEN[-4:] in hint


def test_cost_from_price_or_estimate() -> None:
    r = scoped(vreq("POST", MESSAGES, b"To=%2B14155550100&From=x&Body=hi"))
    est = T.estimate(r, RATES)
    sid = "SM" + "a" * 32
    pending = T.cost(r, est, 201, {}, {"sid": sid, "price": None, "price_unit": "USD", "num_segments": "1"}, RATES)
    assert (pending.cost_usd, pending.cost_source, pending.keep_reservation, pending.vendor_object_id) == (
        est.amount,
        "estimate",
        True,
        sid,
    )
    more = T.cost(r, est, 201, {}, {"sid": sid, "price": None, "num_segments": "3"}, RATES)
    assert more.cost_usd == 3 * est.amount  # Twilio counted more segments than the estimate
    zero = T.cost(r, est, 201, {}, {"sid": sid, "price": None, "num_segments": "0"}, RATES)
    assert zero.cost_usd == est.amount  # Messaging Services answer 0: ignored
    priced = T.cost(r, est, 201, {}, {"sid": sid, "price": "-0.00790", "price_unit": "USD"}, RATES)
    assert (priced.cost_usd, priced.cost_source, priced.keep_reservation) == (7_900, "response", False)
    gbp = T.reconcile({"sid": sid, "price": "-0.04000", "price_unit": "GBP"}, RATES)
    assert gbp is not None and gbp.cost_usd == 50_800
    assert T.reconcile({"sid": sid, "price": None, "status": "sent"}, RATES) is None
    refused = T.cost(r, est, 400, {}, {"code": 21211}, RATES)
    assert (refused.cost_usd, refused.cost_source) == (0, "none")


def test_redaction_at_any_depth() -> None:
    doc = {"sid": SID, "auth_token": TOKEN, "subresource": {"keys": [{"secret": "s3cr3t", "sid": "SK1"}]}}
    assert T.redact(vreq("GET", f"/2010-04-01/Accounts/{SID}.json"), doc) == ["auth_token", "secret"]
    assert TOKEN not in json.dumps(doc) and "s3cr3t" not in json.dumps(doc)


def test_denials_in_twilio_shape() -> None:
    rendered = T.render_denial(Denial("send_cap_exceeded", "Do not retry: daily send cap"), {"code": "x"})
    body = rendered.body
    assert body["code"] == twilio_code("send_cap_exceeded") == 429003
    assert body["status"] == 429 and body["message"].startswith("Do not retry")
    assert body["more_info"].endswith("#send_cap_exceeded")
    assert body["details"]["keybrake_code"] == "send_cap_exceeded"


def test_guarded_endpoints() -> None:
    from keybrake.core.patterns import first_match

    for method, path in [
        ("GET", f"/2010-04-01/Accounts/{SID}.json"),
        ("POST", "/2010-04-01/Accounts/vk_me/Keys.json"),
        ("POST", "/2010-04-01/Accounts/vk_me/IncomingPhoneNumbers.json"),
        ("POST", "/2010-04-01/Accounts/vk_me/IncomingPhoneNumbers/Local.json"),
        ("DELETE", "/2010-04-01/Accounts/vk_me/Messages/SM1.json"),
        ("GET", "/2010-04-01/accounts/vk_me/sip/Domains.json"),
    ]:
        assert first_match(T.guarded, method, tuple(path.strip("/").split("/"))) is not None, path
    assert first_match(T.guarded, "POST", tuple(MESSAGES.strip("/").split("/"))) is None


def test_rates_file(tmp_path: Path) -> None:
    f = tmp_path / "rates.json"
    f.write_text(json.dumps({"sms": {"US": "0.0079", "default": "0.05"}}))
    rates = load_twilio_rates(f)
    assert rates.rate("sms", "US") == Decimal("0.0079") and rates.rate("sms", "FR") == Decimal("0.05")
    assert rates.rate("mms", "US") == Decimal("0.0270")  # tables not in the file keep their defaults
    bad: object
    for bad in ({"sms": {"US": "0.01"}}, {"sms": {"usa": "1", "default": "1"}}, {"fax": {"default": "1"}}, []):
        f.write_text(json.dumps(bad))
        with pytest.raises(RatesError):
            load_twilio_rates(f)


def test_a_live_call_cannot_be_extended_past_max_call_seconds() -> None:
    path = f"/2010-04-01/Accounts/vk_me/Calls/CA{'0' * 32}.json"
    for value, ok in (("300", True), ("600", True), ("601", False), ("86400", False), ("1e9", False)):
        body = urlencode({"TimeLimit": value}).encode()
        if ok:
            scoped(vreq("POST", path, body))
        else:
            with pytest.raises(Denial) as info:
                scoped(vreq("POST", path, body))
            assert info.value.code == "param_not_allowed"
