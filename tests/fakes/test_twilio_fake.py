"""The Twilio fake, driven directly by the official twilio-python SDK (no Keybrake in between)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from tests.fakes.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
    FakeTwilio,
    FakeTwilioThread,
    num_segments,
)

TWILIO = "https://api.twilio.com"
TO, FROM = "+14155550100", "+14155550199"
RFC2822 = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000")


class FakeHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio-python ships no type hints
    """twilio-python has no base-URL option: send what it addresses to api.twilio.com to the fake."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=5)
        self.base_url = base_url

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO):
            url = self.base_url + url[len(TWILIO) :]
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilioThread]:
    with FakeTwilioThread() as t:
        yield t


@pytest.fixture
def fake(server: FakeTwilioThread) -> Iterator[FakeTwilio]:
    yield server.fake
    server.fake.reset()  # keeps objects, as Twilio would: clear them so each test starts empty
    for store in (server.fake.messages, server.fake.calls, server.fake.keys):
        store.clear()


def sdk(server: FakeTwilioThread, username: str = DEFAULT_ACCOUNT_SID, password: str = DEFAULT_AUTH_TOKEN) -> Client:
    return Client(username, password, account_sid=DEFAULT_ACCOUNT_SID, http_client=FakeHttpClient(server.base_url))


def raw(server: FakeTwilioThread, method: str, rest: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("auth", (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN))
    url = f"{server.base_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}{rest}"
    return httpx.request(method, url, timeout=5, **kwargs)


def test_segments_are_counted_as_twilio_does() -> None:
    assert [num_segments("a" * n) for n in (1, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]
    assert [num_segments("é" * n) for n in (70, 71, 134, 135)] == [1, 1, 1, 1]  # é is GSM-7
    assert [num_segments("ж" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]  # UCS-2
    assert num_segments("€" * 80) == 1 and num_segments("€" * 81) == 2  # extension: two septets each
    assert num_segments("👍" * 35) == 1 and num_segments("👍" * 36) == 2  # surrogate pairs: two units
    assert num_segments("a" * 152 + "€" + "a" * 152) == 3  # 306 septets, but an escape pair is never split


def test_message_create_is_unpriced_then_fetch_shows_the_price(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    client = sdk(server)
    msg = client.messages.create(to=TO, from_=FROM, body="Your order shipped")
    assert msg.sid is not None and re.fullmatch(r"SM[0-9a-f]{32}", msg.sid)
    assert (msg.price, msg.price_unit, msg.status, msg.direction) == (None, "USD", "queued", "outbound-api")
    assert (msg.num_segments, msg.num_media, msg.date_sent, msg.error_code) == ("1", "0", None, None)
    assert (msg.account_sid, msg.api_version, msg.to, msg.from_) == (DEFAULT_ACCOUNT_SID, "2010-04-01", TO, FROM)
    assert msg.date_created is not None and msg.date_created.tzinfo is not None
    assert msg.uri == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{msg.sid}.json"

    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json")
    assert (seen.username, seen.password) == (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    assert seen.form == {"To": [TO], "From": [FROM], "Body": ["Your order shipped"]}

    long_gsm = client.messages.create(to=TO, from_=FROM, body="x" * 161)
    unicode = client.messages.create(to=TO, from_=FROM, body="Привет! " * 9)  # 72 UCS-2 units
    assert (long_gsm.num_segments, unicode.num_segments) == ("2", "2")

    assert client.messages(msg.sid).fetch().price is None
    fake.set_price(msg.sid)
    fetched = client.messages(msg.sid).fetch()
    assert (fetched.price, fetched.price_unit, fetched.status) == ("-0.00790", "USD", "delivered")
    assert fetched.date_sent is not None
    fake.price_all("-0.01580")
    assert client.messages(long_gsm.sid).fetch().price == "-0.01580"
    assert client.messages(msg.sid).fetch().price == "-0.00790"  # already priced: unchanged


def test_media_urls_arrive_as_repeated_keys(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    msg = sdk(server).messages.create(to=TO, from_=FROM, media_url=urls)
    assert msg.num_media == "2" and msg.sid is not None and msg.sid.startswith("MM")
    assert fake.requests[-1].form["MediaUrl"] == urls
    assert fake.messages[msg.sid]["_media_urls"] == urls


def test_wrong_credentials_are_20003(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    with pytest.raises(TwilioRestException) as exc:
        sdk(server, password="not-the-token").messages.create(to=TO, from_=FROM, body="x")
    assert (exc.value.status, exc.value.code) == (401, 20003)
    assert exc.value.msg == "Unable to create record: Authenticate"  # the SDK prefixes the message
    assert fake.requests[-1].password == "not-the-token"  # recorded before the auth check
    assert not fake.messages

    # API key credentials work; a path naming another account does not
    assert sdk(server, DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET).messages.create(to=TO, from_=FROM, body="k").sid
    r = httpx.post(
        f"{server.base_url}/2010-04-01/Accounts/AC{'0' * 32}/Messages.json",
        data={"To": TO, "From": FROM, "Body": "x"},
        auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
    )
    assert r.status_code == 401 and r.json()["code"] == 20003


def test_missing_parameters_get_twilio_codes(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    client = sdk(server)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"to": "", "from_": FROM, "body": "x"}, 21604),
        ({"to": TO, "body": "x"}, 21603),
        ({"to": TO, "from_": FROM}, 21602),
        ({"to": TO, "from_": FROM, "body": "x" * 1601}, 21617),
    ]
    for kwargs, code in cases:
        with pytest.raises(TwilioRestException) as exc:
            client.messages.create(**kwargs)
        assert (exc.value.status, exc.value.code) == (400, code), kwargs
    assert "'To'" in raw(server, "POST", "/Messages.json", data={"From": FROM, "Body": "x"}).json()["message"]
    via_service = client.messages.create(to=TO, messaging_service_sid="MG" + "a" * 32, content_sid="HX" + "b" * 32)
    assert via_service.from_ is None and via_service.messaging_service_sid == "MG" + "a" * 32


def test_wire_format_headers_and_errors(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    r = raw(server, "POST", "/Messages.json", data={"To": TO, "From": FROM, "Body": "hi"})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert re.fullmatch(r"RQ[0-9a-f]{32}", r.headers["twilio-request-id"])
    assert RFC2822.fullmatch(r.json()["date_created"])
    sid = r.json()["sid"]

    missing = raw(server, "GET", f"/Messages/SM{'f' * 32}.json")
    assert missing.status_code == 404
    assert missing.json() == {
        "code": 20404,
        "message": f"The requested resource /2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/SM{'f' * 32}.json "
        "was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert raw(server, "GET", "/Nope.json").json()["code"] == 20404
    assert raw(server, "PUT", "/Messages.json").status_code == 405

    redacted = raw(server, "POST", f"/Messages/{sid}.json", data={"Body": ""})
    assert redacted.status_code == 200 and redacted.json()["body"] == ""
    deleted = raw(server, "DELETE", f"/Messages/{sid}.json")
    assert deleted.status_code == 204 and deleted.content == b"" and sid not in fake.messages

    fake.fail_next(429)
    busy = raw(server, "POST", "/Messages.json", data={"To": TO, "From": FROM, "Body": "hi"})
    assert busy.status_code == 429 and busy.json()["code"] == 20429
    assert busy.json()["more_info"] == "https://www.twilio.com/docs/errors/20429"
    assert not fake.messages  # a forced answer creates nothing


def test_list_pages(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    client = sdk(server)
    sids = [client.messages.create(to=TO, from_=FROM, body=f"m{i}").sid for i in range(3)]
    page = raw(server, "GET", "/Messages.json", params={"PageSize": "2"}).json()
    assert [m["sid"] for m in page["messages"]] == sids[:0:-1]  # newest first
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 2, 0, 1)
    assert page["previous_page_uri"] is None and "Page=1" in page["next_page_uri"]
    assert page["uri"] == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json?PageSize=2&Page=0"
    assert [m.sid for m in client.messages.list(page_size=2)] == sids[::-1]  # follows next_page_uri


def test_calls_account_and_keys(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    client = sdk(server)
    call = client.calls.create(to=TO, from_=FROM, url="https://example.com/twiml", time_limit=600)
    assert call.sid is not None and re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert (call.status, call.price, call.price_unit, call.duration) == ("queued", None, "USD", None)
    assert call.to_formatted == "(415) 555-0100"
    assert fake.requests[-1].form["TimeLimit"] == ["600"] and fake.calls[call.sid]["_time_limit"] == 600
    fake.set_price(call.sid, "-0.02800", duration=95)
    fetched = client.calls(call.sid).fetch()
    assert (fetched.price, fetched.status, fetched.duration) == ("-0.02800", "completed", "95")
    with pytest.raises(TwilioRestException) as exc:
        client.calls.create(to=TO, from_=FROM)
    assert exc.value.code == 21205

    account = raw(server, "GET", ".json").json()
    assert account["auth_token"] == DEFAULT_AUTH_TOKEN and account["sid"] == DEFAULT_ACCOUNT_SID

    key = client.new_keys.create(friendly_name="ci")
    assert key.sid is not None and key.secret is not None and len(key.secret) == 32
    assert sdk(server, key.sid, key.secret).messages.create(to=TO, from_=FROM, body="new key").sid
    listed = raw(server, "GET", "/Keys.json").json()["keys"]
    assert [k["sid"] for k in listed] == [key.sid] and "secret" not in listed[0]
    assert raw(server, "DELETE", f"/Keys/{key.sid}.json").status_code == 204
    with pytest.raises(TwilioRestException):
        sdk(server, key.sid, key.secret).messages.create(to=TO, from_=FROM, body="revoked")


def test_hold_and_release(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    server.hold()
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(raw(server, "GET", ".json").status_code))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and not answers
    server.release()
    worker.join(5)
    assert answers == [200]


async def test_async_context_manager() -> None:
    async with FakeTwilio() as fake:
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{fake.base_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json",
                auth=(DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET),
            )
        assert r.status_code == 200 and fake.requests[0].username == DEFAULT_API_KEY_SID


def test_xml_and_bare_spellings_are_the_same_operation(server: FakeTwilioThread, fake: FakeTwilio) -> None:
    """Twilio serves every 2010 resource as .json, .xml or without extension (XML, its default)."""
    for rest in ("/Messages.xml", "/Messages"):
        r = raw(server, "POST", rest, data={"To": TO, "From": FROM, "Body": "hi"})
        assert r.status_code == 201 and r.headers["content-type"] == "application/xml"
        assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<TwilioResponse><Message><AccountSid>')
        assert "<Price />" in r.text and "<Status>queued</Status>" in r.text
    assert len(fake.messages) == 2
    listed = raw(server, "GET", "/Messages")
    assert listed.status_code == 200 and listed.text.count("<Message>") == 2 and 'pagesize="50"' in listed.text
    account = raw(server, "GET", "")
    assert f"<AuthToken>{DEFAULT_AUTH_TOKEN}</AuthToken>" in account.text  # what Keybrake must never pass on
    missing = raw(server, "GET", "/Nope.xml")
    assert missing.status_code == 404 and "<RestException><Code>20404</Code>" in missing.text
    bad = raw(server, "POST", "/Messages", data={"From": FROM, "Body": "hi"})
    assert bad.status_code == 400 and "<Code>21604</Code>" in bad.text
