"""The fake Postmark against postmarker, so the fake answers what the SDK expects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, MAX_BATCH, FakePostmark, FakePostmarkThread

SENDER = "Acme <bot@mail.acme.io>"


@pytest.fixture
def server() -> Iterator[FakePostmarkThread]:
    with FakePostmarkThread() as t:
        yield t


@pytest.fixture
def fake(server: FakePostmarkThread) -> FakePostmark:
    return server.fake


@pytest.fixture
def pm(server: FakePostmarkThread) -> PostmarkClient:
    """postmarker pointed straight at the fake (its root has no path, so urljoin keeps it)."""
    return PostmarkClient(server_token=DEFAULT_SERVER_TOKEN, root_api_url=server.base_url + "/")


def test_send_splits_comma_separated_recipients_with_display_names(pm: PostmarkClient, fake: FakePostmark) -> None:
    sent = pm.emails.send(
        From=SENDER, To=["Ana <ana@example.com>", "bo@example.com"], Cc="cy@example.org", Subject="s", TextBody="t"
    )
    assert (sent["ErrorCode"], sent["Message"]) == (0, "OK")
    uuid.UUID(sent["MessageID"])
    (rec,) = fake.requests
    assert (rec.method, rec.path) == ("POST", "/email")
    assert rec.json["To"] == "Ana <ana@example.com>,bo@example.com"  # postmarker joins lists with ","
    assert rec.headers["x-postmark-server-token"] == DEFAULT_SERVER_TOKEN
    stored = fake.messages[sent["MessageID"]]
    assert (stored["to_list"], stored["cc_list"]) == (["ana@example.com", "bo@example.com"], ["cy@example.org"])


def test_keys_are_read_in_any_letter_case(server: FakePostmarkThread, fake: FakePostmark) -> None:
    body = {"from": SENDER, "TO": "ana@example.com", "subject": "s", "textbody": "t"}
    r = httpx.post(server.base_url + "/email", json=body, headers={"X-Postmark-Server-Token": DEFAULT_SERVER_TOKEN})
    assert r.status_code == 200 and r.json()["ErrorCode"] == 0
    assert fake.messages[r.json()["MessageID"]]["to_list"] == ["ana@example.com"]


def test_batch_answers_each_message_on_its_own(pm: PostmarkClient, fake: FakePostmark) -> None:
    ok = {"From": SENDER, "To": "a@example.com", "Subject": "s", "TextBody": "t"}
    results = pm.emails.send_batch(ok, {**ok, "To": "not an address"})
    assert [r["ErrorCode"] for r in results] == [0, 300]
    assert len(fake.messages) == 1


def test_templates_batch_and_trailing_slash(pm: PostmarkClient, fake: FakePostmark) -> None:
    one = {"From": SENDER, "To": "a@example.com", "TemplateAlias": "welcome", "TemplateModel": {"n": 1}}
    assert pm.emails.send_with_template(**one)["ErrorCode"] == 0
    assert [r["ErrorCode"] for r in pm.emails.send_template_batch(one, one)] == [0, 0]
    assert [r.path for r in fake.requests] == ["/email/withTemplate/", "/email/batchWithTemplates/"]
    assert fake.requests[1].json["Messages"][0]["TemplateAlias"] == "welcome"


def test_limits_and_errors(server: FakePostmarkThread, pm: PostmarkClient) -> None:
    many = ",".join(f"u{i}@example.com" for i in range(51))
    with pytest.raises(ClientError) as exc:
        pm.emails.send(From=SENDER, To=many, Subject="s", TextBody="t")
    assert exc.value.error_code == 300 and "50 recipients" in str(exc.value)
    headers = {"X-Postmark-Server-Token": DEFAULT_SERVER_TOKEN}
    no_body = httpx.post(server.base_url + "/email", json={"From": SENDER, "To": "a@example.com"}, headers=headers)
    assert (no_body.status_code, no_body.json()["ErrorCode"]) == (422, 300)
    msg = {"From": SENDER, "To": "a@example.com", "TextBody": "t"}
    too_many = httpx.post(server.base_url + "/email/batch", json=[msg] * (MAX_BATCH + 1), headers=headers)
    assert (too_many.status_code, too_many.json()["ErrorCode"]) == (422, 410)
    form = httpx.post(server.base_url + "/email", data={"To": "a@example.com"}, headers=headers)
    assert (form.status_code, form.json()["ErrorCode"]) == (422, 409)
    bad = httpx.post(server.base_url + "/email", content=b"{", headers={**headers, "content-type": "application/json"})
    assert (bad.status_code, bad.json()["ErrorCode"]) == (422, 402)


def test_tokens(server: FakePostmarkThread, fake: FakePostmark) -> None:
    wrong = PostmarkClient(server_token="nope", root_api_url=server.base_url + "/")
    with pytest.raises(ClientError) as exc:
        wrong.emails.send(From=SENDER, To="a@example.com", Subject="s", TextBody="t")
    assert exc.value.error_code == 10
    upper = httpx.get(server.base_url + "/server", headers={"x-postmark-server-token": DEFAULT_SERVER_TOKEN.upper()})
    assert upper.status_code == 200 and upper.json()["ApiTokens"] == [DEFAULT_SERVER_TOKEN]
    servers = httpx.get(server.base_url + "/servers", headers={"X-Postmark-Server-Token": DEFAULT_SERVER_TOKEN})
    assert (servers.status_code, servers.json()["ErrorCode"]) == (401, 10)  # needs the account token
    fake.fail_next(429, 429)
    with pytest.raises(ClientError) as exc:
        PostmarkClient(server_token=DEFAULT_SERVER_TOKEN, root_api_url=server.base_url + "/").emails.send(
            From=SENDER, To="a@example.com", Subject="s", TextBody="t"
        )
    assert exc.value.error_code == 429


def test_webhooks_carry_http_auth(server: FakePostmarkThread) -> None:
    headers = {"X-Postmark-Server-Token": DEFAULT_SERVER_TOKEN}
    hook = {"Url": "https://hooks.acme.io/pm", "HttpAuth": {"Username": "u", "Password": "s3cret"}}
    made = httpx.post(server.base_url + "/webhooks", json=hook, headers=headers)
    assert made.json()["HttpAuth"]["Password"] == "s3cret"
    listed = httpx.get(server.base_url + "/webhooks", headers=headers).json()
    assert listed["Webhooks"][0]["Url"] == "https://hooks.acme.io/pm"
