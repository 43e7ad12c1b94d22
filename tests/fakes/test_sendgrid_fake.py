"""The fake SendGrid against sendgrid-python, so the fake answers what the SDK expects."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from python_http_client.exceptions import BadRequestsError, HTTPError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Bcc, Cc, Mail, Personalization, To

from tests.fakes.sendgrid_server import DEFAULT_API_KEY, FakeSendGrid, FakeSendGridThread


@pytest.fixture
def server() -> Iterator[FakeSendGridThread]:
    with FakeSendGridThread() as t:
        yield t


@pytest.fixture
def fake(server: FakeSendGridThread) -> FakeSendGrid:
    return server.fake


@pytest.fixture
def sg(server: FakeSendGridThread) -> SendGridAPIClient:
    return SendGridAPIClient(DEFAULT_API_KEY, host=server.base_url)


def mail(to: list[str], cc: list[str] = (), bcc: list[str] = ()) -> Mail:  # type: ignore[assignment]
    m = Mail(from_email="bot@mail.acme.io", subject="Your receipt", html_content="<p>Thanks!</p>")
    p = Personalization()
    for a in to:
        p.add_to(To(a))
    for a in cc:
        p.add_cc(Cc(a))
    for a in bcc:
        p.add_bcc(Bcc(a))
    m.add_personalization(p)
    return m


def test_send_is_accepted_with_a_message_id_and_no_body(sg: SendGridAPIClient, fake: FakeSendGrid) -> None:
    r = sg.send(mail(["a@example.com", "b@example.com"], cc=["c@example.org"]))
    assert r.status_code == 202 and r.body == b""
    message_id = r.headers["X-Message-Id"]
    assert fake.mails[message_id]["recipients"] == ["a@example.com", "b@example.com", "c@example.org"]
    (rec,) = fake.requests
    assert (rec.method, rec.path) == ("POST", "/v3/mail/send")
    assert rec.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert rec.json["personalizations"][0]["cc"] == [{"email": "c@example.org"}]


def test_refusals_name_the_field(sg: SendGridAPIClient, server: FakeSendGridThread) -> None:
    with pytest.raises(BadRequestsError) as exc:
        sg.send(mail(["a@example.com"], bcc=["a@example.com"]))
    (error,) = exc.value.to_dict["errors"]
    assert error["field"] == "personalizations.0.bcc" and "unique" in error["message"] and error["help"]
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    no_to = {"personalizations": [{}], "from": {"email": "bot@mail.acme.io"}, "subject": "s", "content": []}
    r = httpx.post(server.base_url + "/v3/mail/send", json=no_to, headers=headers)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "personalizations.0.to"
    many = {"personalizations": [{"to": [{"email": f"u{i}@example.com"} for i in range(1001)]}]}
    r = httpx.post(server.base_url + "/v3/mail/send", json={**many, "from": {"email": "bot@acme.io"}}, headers=headers)
    assert r.status_code == 400 and "1000" in r.json()["errors"][0]["message"]
    form = httpx.post(server.base_url + "/v3/mail/send", data={"a": "b"}, headers=headers)
    assert form.status_code == 415


def test_auth(server: FakeSendGridThread) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        SendGridAPIClient("SG.wrong", host=server.base_url).send(mail(["a@example.com"]))
    assert "invalid, expired, or revoked" in exc.value.to_dict["errors"][0]["message"]
    r = httpx.get(server.base_url + "/v3/scopes")
    assert r.status_code == 401 and r.json() == {"errors": [{"message": "authorization required", "field": None}]}


def test_api_keys_are_answered_once_and_authenticate(sg: SendGridAPIClient, fake: FakeSendGrid) -> None:
    made = sg.client.api_keys.post(request_body={"name": "agent", "scopes": ["mail.send"]})
    assert made.status_code == 201
    secret = made.to_dict["api_key"]
    assert secret.startswith("SG.")
    listed = sg.client.api_keys.get().to_dict["result"]
    assert listed == [{"api_key_id": made.to_dict["api_key_id"], "name": "agent"}]
    assert SendGridAPIClient(secret, host=fake.base_url).client.scopes.get().status_code == 200
    fake.fail_next(500)
    with pytest.raises(HTTPError):
        sg.client.scopes.get()
