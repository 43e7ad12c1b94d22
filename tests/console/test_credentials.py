"""Credentials in the console (/console/credentials) at the HTTP level: listed with their active
keys; rotated from a page that names the credential, the new secret never echoed (not in a page,
a redirect or a log line, not even on a refusal); deleted after a confirmation, with the API's
409 while keys use it and its revoke_keys option."""

from __future__ import annotations

import httpx

from tests.console.test_sessions import csrf_of, signed_in
from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.stripe_sdk import client

NEW_SECRET = "sk_test_ROTATEDnewSECRET0987654321zz"
BAD_SECRET = "sk_nope_TYPOEDsecretVALUE123456789"


def _everything(responses: list[httpx.Response]) -> str:
    return "\n".join(f"{r.headers}\n{r.text}" for r in responses)


def test_rotate_from_the_page_never_echoes_the_secret(ckb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = ckb.issue({})
    seen: list[httpx.Response] = []
    with signed_in(ckb) as c:
        listed = c.get("/console/credentials")
        seen.append(listed)
        assert "<code>default</code>" in listed.text and "sk_test_…7890" in listed.text
        assert REAL_SECRET not in listed.text
        form = c.get("/console/credentials/default/rotate")
        seen.append(form)
        assert "Rotate credential default" in form.text and "<strong>1</strong> active keys" in form.text
        assert 'type="password" autocomplete="off"' in form.text
        token = csrf_of(c, "/console/credentials/default/rotate")
        r = c.post(
            "/console/credentials/default/rotate",
            data={"csrf_token": token, "confirm": "yes", "secret": BAD_SECRET, "base_url": fake_stripe.base_url},
        )
        seen.append(r)
        assert r.status_code == 422 and "a Stripe secret must be a secret or restricted key" in r.text
        assert BAD_SECRET not in r.text and f'value="{fake_stripe.base_url}"' in r.text  # the URL is kept
        r = c.post("/console/credentials/default/rotate", data={"csrf_token": token, "secret": NEW_SECRET})
        seen.append(r)
        assert r.status_code == 422 and "nothing was changed" in r.text  # no confirm=yes
        r = c.post(
            "/console/credentials/default/rotate",
            data={"csrf_token": token, "confirm": "yes", "secret": NEW_SECRET + "\n"},
        )
        seen.append(r)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/credentials?notice=Rotated")
        after = c.get(r.headers["location"])
        seen.append(after)
        assert "Rotated credential default: its 1 active keys" in after.text and "sk_test_…21zz" in after.text
        seen += [c.get(p) for p in ("/console/credentials/default/rotate", "/console", "/console/approvals")]
    # the new secret took effect: the proxied call carries it to the vendor
    fake_stripe.secret = NEW_SECRET
    assert client(ckb, key).v1.customers.create({"email": "a@example.com"}).email == "a@example.com"
    assert fake_stripe.requests[-1].headers["authorization"] == f"Bearer {NEW_SECRET}"
    for secret in (NEW_SECRET, BAD_SECRET):
        assert secret not in _everything(seen)
        assert secret not in ckb.logs.text()


def test_delete_is_confirmed_and_refused_while_keys_use_the_credential(ckb: KeybrakeThread) -> None:
    key = ckb.issue({})
    with signed_in(ckb) as c:
        token = csrf_of(c, "/console/credentials")
        confirm = c.post("/console/credentials/default/delete", data={"csrf_token": token})
        assert confirm.status_code == 200 and "Delete credential default?" in confirm.text
        assert "<strong>1</strong> active keys" in confirm.text and "Also revoke its 1 active keys" in confirm.text
        r = c.post("/console/credentials/default/delete", data={"csrf_token": token, "confirm": "yes"})
        assert r.status_code == 409 and "1 active keys use credential &#39;default&#39;" in r.text
        assert ckb.key(key["id"])["status"] == "active"
        r = c.post(
            "/console/credentials/default/delete", data={"csrf_token": token, "confirm": "yes", "revoke_keys": "yes"}
        )
        assert r.status_code == 303 and "1%20keys%20revoked" in r.headers["location"]
        assert ckb.key(key["id"])["status"] == "revoked"
        assert "No credentials yet" in c.get("/console/credentials").text


def test_a_twilio_credential_is_rotated_from_its_parts(ckb: KeybrakeThread) -> None:
    ckb.add_credential(
        "https://api.twilio.com",
        name="sms",
        vendor="twilio",
        secret={"account_sid": "AC" + "0" * 32, "auth_token": "f" * 32},
    )
    new_token = "0123456789abcdef" * 2
    with signed_in(ckb) as c:
        form = c.get("/console/credentials/sms/rotate")
        assert 'name="account_sid"' in form.text and 'name="auth_token" type="password"' in form.text
        token = csrf_of(c, "/console/credentials/sms/rotate")
        data = {"csrf_token": token, "confirm": "yes", "account_sid": "AC" + "1" * 32, "auth_token": new_token}
        r = c.post("/console/credentials/sms/rotate", data=data)
        assert r.status_code == 303, r.text
        r = c.post("/console/credentials/sms/rotate", data={**data, "auth_token": "short"})
        assert r.status_code == 422 and "a Twilio secret is" in r.text and new_token not in r.text
    with ckb.admin() as api:
        assert api.get("/v1/credentials/sms").json()["secret_hint"].endswith("token …cdef")
    assert new_token not in ckb.logs.text()
