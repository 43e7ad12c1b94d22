"""sendgrid-python through a running Keybrake against a fake SendGrid built from SendGrid's
OpenAPI documents; SendGrid is the built-in defined by sendgrid.toml."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Bcc, BccSettings, BccSettingsEmail, Cc, Mail, MailSettings, Personalization, To

from tests.fakes.sendgrid_server import DEFAULT_API_KEY, FakeSendGrid, FakeSendGridThread
from tests.harness import KeybrakeThread

RATE = 0.0004  # the default KEYBRAKE_SENDGRID_USD_PER_EMAIL


@pytest.fixture
def fake_sg() -> Any:
    with FakeSendGridThread() as t:
        yield t.fake


@pytest.fixture
def kb(tmp_path: Path, fake_sg: FakeSendGrid) -> Any:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_sg.base_url, name="sendgrid", secret=DEFAULT_API_KEY, vendor="sendgrid")
        yield server


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    return kb.issue(policy, vendor="sendgrid", label="test:mailer:run-1")


def sdk(kb: KeybrakeThread, key: dict[str, Any]) -> SendGridAPIClient:
    return SendGridAPIClient(key["key"], host=f"{kb.url}/sendgrid")


def mail(*personalizations: dict[str, list[str]], sender: str = "bot@mail.acme.io") -> Mail:
    """A Mail with one Personalization per dict of to/cc/bcc address lists."""
    m = Mail(from_email=sender, subject="Your receipt", html_content="<p>Thanks!</p>")
    for spec in personalizations:
        p = Personalization()
        for a in spec.get("to", []):
            p.add_to(To(a))
        for a in spec.get("cc", []):
            p.add_cc(Cc(a))
        for a in spec.get("bcc", []):
            p.add_bcc(Bcc(a))
        m.add_personalization(p)
    return m


def errors(exc: HTTPError) -> dict[str, Any]:
    return exc.to_dict  # type: ignore[no-any-return]


def test_send_swaps_the_key_and_counts_every_address(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(
        kb, daily_usd_cap=1, daily_send_cap=10, allowed_to_domains=["example.com"], allowed_from_domains=["*.acme.io"]
    )
    r = sdk(kb, key).send(
        mail({"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}, {"to": ["d@example.com"]})
    )
    assert r.status_code == 202
    message_id = r.headers["X-Message-Id"]
    assert sorted(fake_sg.mails[message_id]["recipients"]) == [f"{c}@example.com" for c in "abcd"]
    (seen,) = fake_sg.requests
    assert seen.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert key["key"] not in json.dumps([seen.headers, seen.body.decode()])
    (row,) = kb.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"]) == ("allowed", pytest.approx(4 * RATE))
    assert row["vendor_request_id"] == message_id
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 4


def test_scope_covers_every_personalization_and_sender(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1, allowed_to_domains=["example.com"], allowed_from_domains=["mail.acme.io"])
    sg = sdk(kb, key)
    with pytest.raises(HTTPError) as exc:
        sg.send(mail({"to": ["a@example.com"]}, {"to": ["b@example.com"], "bcc": ["spy@evil.io"]}))
    assert exc.value.status_code == 403
    body = errors(exc.value)
    assert body["id"] == "scope_violation" and "evil.io" in body["errors"][0]["message"]
    with pytest.raises(HTTPError) as exc:
        sg.send(mail({"to": ["a@example.com"]}, sender="bot@evil.io"))
    assert errors(exc.value)["id"] == "scope_violation"
    own_from = mail({"to": ["a@example.com"]}).get()
    own_from["personalizations"][0]["from"] = {"email": "m@evil.io"}
    with pytest.raises(HTTPError) as exc:
        sg.send(own_from)
    assert errors(exc.value)["id"] == "scope_violation"
    assert not fake_sg.requests


@pytest.mark.timing
def test_send_cap_and_usd_cap_are_exact_under_concurrency(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=30)

    def send(i: int) -> int:
        try:
            return int(sdk(kb, key).send(mail({"to": [f"u{i}@example.com"], "cc": [f"c{i}@example.com"]})).status_code)
        except HTTPError as exc:
            return int(exc.status_code)

    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(send, range(40)))
    assert (outcomes.count(202), outcomes.count(429)) == (15, 25)  # 2 addresses each, 30 a day
    assert len(fake_sg.mails) == 15
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 30
    assert len(kb.audit(key_id=key["id"])) == 40  # one audit row per call

    usd_key = issue(kb, daily_usd_cap=8 * RATE, daily_send_cap=1000)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: _status(sdk(kb, usd_key), mail({"to": [f"v{i}@example.com"]})), range(20)))
    assert results.count(202) == 8 and len(fake_sg.mails) == 23
    assert kb.key(usd_key["id"])["usage"]["daily_usd"]["used"] == pytest.approx(8 * RATE)


def _status(sg: SendGridAPIClient, m: Mail) -> int:
    try:
        return int(sg.send(m).status_code)
    except HTTPError as exc:
        return int(exc.status_code)


def test_revoke_takes_effect_on_the_next_request(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1)
    sg = sdk(kb, key)
    assert sg.send(mail({"to": ["a@example.com"]})).status_code == 202
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}", params={"reason": "incident 42"}).status_code == 200
    for _ in range(3):
        with pytest.raises(HTTPError) as exc:
            sg.send(mail({"to": ["a@example.com"]}))
        assert exc.value.status_code == 401 and errors(exc.value)["id"] == "key_revoked"
    assert len(fake_sg.requests) == 1
    assert len(kb.audit(key_id=key["id"])) == 4


def test_guarded_endpoints_and_the_redacted_api_key(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1)
    sg = sdk(kb, key)
    calls: list[Callable[[], Any]] = [
        lambda: sg.client.api_keys.post(request_body={"name": "x"}),
        lambda: sg.client.user.webhooks.event.settings.patch(request_body={"url": "https://evil.example"}),
        lambda: sg.client.subusers.post(request_body={"username": "x"}),
        lambda: sg.client.teammates.post(request_body={"email": "x@evil.io"}),
        lambda: sg.client.whitelabel.domains.post(request_body={"domain": "evil.io"}),
    ]
    for call in calls:
        with pytest.raises(HTTPError) as exc:
            call()
        assert exc.value.status_code == 403 and errors(exc.value)["id"] == "endpoint_guarded"
    assert not fake_sg.requests
    opened = issue(kb, daily_usd_cap=1, allowed_endpoints=["POST /v3/api_keys"])
    made = sdk(kb, opened).client.api_keys.post(request_body={"name": "agent"})
    assert made.status_code == 201 and made.to_dict["api_key"] == "[redacted by keybrake]"
    with pytest.raises(HTTPError) as exc:
        sdk(kb, opened).client.scopes.get()  # not named: allowed_endpoints is an allowlist
    assert exc.value.status_code == 403 and errors(exc.value)["id"] == "endpoint_not_allowed"


def test_bad_bodies_and_keys_are_refused_before_sending(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1)
    url = f"{kb.url}/sendgrid/v3/mail/send"
    bearer = {"Authorization": f"Bearer {key['key']}"}
    form = httpx.post(url, data={"to": "a@example.com"}, headers=bearer)
    assert form.status_code == 415 and form.json()["errors"][0]["message"]
    twice = b'{"personalizations": [], "personalizations": [{"to": [{"email": "spy@evil.io"}]}]}'
    dup = httpx.post(url, content=twice, headers={**bearer, "content-type": "application/json"})
    assert dup.status_code == 400
    array = httpx.post(url, json=[{"personalizations": [{"to": [{"email": "spy@evil.io"}]}]}], headers=bearer)
    assert array.status_code == 400  # a body of a shape the definition does not read
    subuser = SendGridAPIClient(key["key"], host=f"{kb.url}/sendgrid", impersonate_subuser="tenant-b")
    with pytest.raises(HTTPError) as exc:
        subuser.send(mail({"to": ["a@example.com"]}))  # On-Behalf-Of would act on another account
    assert exc.value.status_code == 400 and "on-behalf-of" in errors(exc.value)["errors"][0]["message"].lower()
    real = httpx.post(url, json={}, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
    assert real.status_code == 401 and real.json()["id"] == "key_invalid"
    assert not fake_sg.requests


def with_bcc_setting(m: Mail, address: str) -> Mail:
    """sendgrid-python's BccSettings: mail_settings.bcc.email gets a copy of every email."""
    settings = MailSettings()
    settings.bcc_settings = BccSettings(True, BccSettingsEmail(address))
    m.mail_settings = settings
    return m


def test_the_bcc_mail_setting_is_a_recipient(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=10, allowed_to_domains=["example.com"])
    sg = sdk(kb, key)
    with pytest.raises(HTTPError) as exc:
        sg.send(with_bcc_setting(mail({"to": ["a@example.com"]}), "spy@evil.io"))
    assert exc.value.status_code == 403 and errors(exc.value)["id"] == "scope_violation"
    assert "evil.io" in errors(exc.value)["errors"][0]["message"] and not fake_sg.requests
    assert sg.send(with_bcc_setting(mail({"to": ["a@example.com"]}), "archive@example.com")).status_code == 202
    row = next(r for r in kb.audit(key_id=key["id"]) if r["verdict"] == "allowed")
    assert row["request_summary"] == {"endpoint": "POST /v3/mail/send", "items": 2}
    assert row["cost_usd"] == pytest.approx(2 * RATE)
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 2


def test_settings_that_redirect_mail_and_other_senders_are_guarded(kb: KeybrakeThread, fake_sg: FakeSendGrid) -> None:
    key = issue(kb, daily_usd_cap=1)
    sg = sdk(kb, key)
    calls: list[Callable[[], Any]] = [
        lambda: sg.client.mail_settings.forward_bounce.patch(request_body={"enabled": True, "email": "x@evil.io"}),
        lambda: sg.client.mail_settings.forward_spam.patch(request_body={"enabled": True, "email": "x@evil.io"}),
        lambda: sg.client.mail_settings.bcc.patch(request_body={"enabled": True, "email": "x@evil.io"}),
        lambda: sg.client.tracking_settings.subscription.patch(request_body={"url": "https://evil.example"}),
        lambda: sg.client.marketing.test.send_email.post(request_body={"template_id": "t", "emails": ["x@evil.io"]}),
        lambda: sg.client.mail.send.beta.post(request_body={"personalizations": [{"to": [{"email": "x@evil.io"}]}]}),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(HTTPError) as exc:
            call()
        assert exc.value.status_code == 403 and errors(exc.value)["id"] == "endpoint_guarded", i
    v2 = httpx.post(  # the retired v2 Web API, outside sendgrid-python's /v3 paths
        f"{kb.url}/sendgrid/api/mail.send.json",
        json={"to": "x@evil.io"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    assert v2.status_code == 403 and v2.json()["id"] == "endpoint_guarded"
    assert not fake_sg.requests


def test_unlisted_endpoints_are_refused_on_a_key_that_scopes_or_caps_sends(
    kb: KeybrakeThread, fake_sg: FakeSendGrid
) -> None:
    for policy in ({"allowed_from_domains": ["acme.io"]}, {"daily_send_cap": 5}):
        sg = sdk(kb, issue(kb, max_usd_per_call=0.05, **policy))
        with pytest.raises(HTTPError) as exc:
            sg.client.validations.email.post(request_body={"email": "x@evil.io"})
        assert exc.value.status_code == 403 and errors(exc.value)["id"] == "scope_violation"
        assert "not described by the SendGrid definition" in errors(exc.value)["errors"][0]["message"]
    assert not fake_sg.requests
