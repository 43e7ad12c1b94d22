"""A small in-memory fake of Twilio's REST API 2010-04-01 on loopback, for tests.

Shapes follow Twilio's OpenAPI spec (/work/shared/vendor-specs/twilio_api_v2010.json): form
bodies with list parameters as repeated keys (`MediaUrl=a&MediaUrl=b`), JSON answers, 201 on
create, 204 on delete, errors as `{"code", "message", "more_info", "status"}`, a
`Twilio-Request-Id` header. As Twilio does, a message or call is created with `price: null`;
``set_price`` makes a later fetch show a price (a negative decimal string, e.g. "-0.00790").

Covered: Messages (create, fetch, list, update, delete), Calls (create, fetch), the Account
(fetch — it carries `auth_token`, as Twilio's does) and API Keys (create — it carries `secret`).
HTTP Basic auth as Account SID + auth token, or API key SID + secret. Anything else is 404.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest

DEFAULT_ACCOUNT_SID = "AC" + "5ca1ab1e" * 4
DEFAULT_AUTH_TOKEN = "a11ce" + "0" * 22 + "b0b00"
DEFAULT_API_KEY_SID = "SK" + "be11" * 8
DEFAULT_API_KEY_SECRET = "Sk3yS3cretSk3yS3cretSk3yS3cret12"
API = "/2010-04-01"
_GSM = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà\f^{}\\[~]|€"
)


def _hex(n: int = 32) -> str:
    return "".join(secrets.choice("0123456789abcdef") for _ in range(n))


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def num_segments(body: str) -> int:
    """Twilio's count: GSM-7 160/153 (extension characters take two), else UCS-2 70/67."""
    if all(ch in _GSM for ch in body):
        units = sum(2 if ch in "\f^{}\\[~]|€" else 1 for ch in body)
        return 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
    return 1 if units <= 70 else -(-units // 67)


class FakeTwilio(FakeServer):
    name = "fake-twilio"

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        api_key_sid: str = DEFAULT_API_KEY_SID,
        api_key_secret: str = DEFAULT_API_KEY_SECRET,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.logins = {account_sid: auth_token, api_key_sid: api_key_secret}
        self.auth_token = auth_token
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, dict[str, Any]] = {}

    # -- test hooks -----------------------------------------------------------------------

    def fail_next(self, status: int, code: int = 20500, message: str = "Internal Server Error") -> None:
        self.next_status.append(_error(status, code, message))

    def set_price(self, sid: str, price: str = "-0.00790", price_unit: str = "USD", status: str | None = None) -> None:
        obj = self.messages.get(sid) or self.calls[sid]
        obj.update(price=price, price_unit=price_unit, date_updated=formatdate(usegmt=True))
        obj["status"] = status or ("delivered" if sid[:2] in ("SM", "MM") else "completed")

    def price_all(self, price: str = "-0.00790") -> None:
        for sid, obj in [*self.messages.items(), *self.calls.items()]:
            if obj["price"] is None:
                self.set_price(sid, price)

    # -- plumbing -------------------------------------------------------------------------

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        if body:
            rec.form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
                rec.username, rec.password = user, password
            except (binascii.Error, UnicodeDecodeError):
                pass
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        headers = {"Twilio-Request-Id": "RQ" + _hex()}
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.json_response(doc, status=status, headers=headers)

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        if rec.username is None or self.logins.get(rec.username) != rec.password:
            return self.reply(*_error(401, 20003, "Authenticate"))
        m = re.fullmatch(rf"{API}/Accounts/(?P<sid>[^/]+?)(?P<rest>\.json|/.*)", request.path)
        if m is None:
            return self.reply(*_error(404, 20404, f"The requested resource {request.path} was not found"))
        if m["sid"] != self.account_sid:
            # Twilio answers a path naming an account the credentials cannot reach with 20003.
            return self.reply(*_error(401, 20003, "Authenticate"))
        route = (request.method, m["rest"])
        form = rec.form
        if route == ("GET", ".json"):
            return self.reply(200, self._account())
        if route == ("POST", "/Messages.json"):
            return self.reply(*self._create_message(form))
        if route == ("GET", "/Messages.json"):
            return self.reply(200, self._page("messages", list(self.messages.values()), request.path))
        if route == ("POST", "/Calls.json"):
            return self.reply(*self._create_call(form))
        if route == ("POST", "/Keys.json"):
            return self.reply(201, self._new_key(form))
        obj = re.fullmatch(r"/(?P<kind>Messages|Calls)/(?P<id>[^/]+)\.json", m["rest"])
        if obj is not None:
            store = self.messages if obj["kind"] == "Messages" else self.calls
            found = store.get(obj["id"])
            if found is None:
                return self.reply(*_error(404, 20404, f"The requested resource {request.path} was not found"))
            if request.method == "GET":
                return self.reply(200, found)
            if request.method == "DELETE":
                del store[obj["id"]]
                return self.reply(204, None)
            if request.method == "POST" and obj["kind"] == "Messages":
                if "Body" in form:
                    found["body"] = form["Body"][0]
                if form.get("Status") == ["canceled"]:
                    found["status"] = "canceled"
                return self.reply(200, found)
        return self.reply(*_error(404, 20404, f"The requested resource {request.path} was not found"))

    # -- resources ------------------------------------------------------------------------

    def _uri(self, rest: str) -> str:
        return f"{API}/Accounts/{self.account_sid}{rest}"

    def _account(self) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        return {
            "auth_token": self.auth_token,
            "date_created": now,
            "date_updated": now,
            "friendly_name": "Fake account",
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": "active",
            "subresource_uris": {"messages": self._uri("/Messages.json"), "calls": self._uri("/Calls.json")},
            "type": "Full",
            "uri": self._uri(".json"),
        }

    def _create_message(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        to = form.get("To", [""])[0]
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        body = form.get("Body", [""])[0]
        media = form.get("MediaUrl", [])
        if not body and not media and not form.get("ContentSid"):
            return _error(400, 21602, "Message body is required.")
        sid = ("MM" if media else "SM") + _hex()
        now = formatdate(usegmt=True)
        msg = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From", [None])[0],
            "messaging_service_sid": form.get("MessagingServiceSid", [None])[0],
            "num_media": str(len(media)),
            "num_segments": str(num_segments(body) if body else 1),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": self._uri(f"/Messages/{sid}/Media.json")},
            "to": to,
            "uri": self._uri(f"/Messages/{sid}.json"),
        }
        self.messages[sid] = msg
        return 201, msg

    def _create_call(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        to, frm = form.get("To", [""])[0], form.get("From", [""])[0]
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not frm:
            return _error(400, 21213, "No 'From' number is specified")
        if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required.")
        sid = "CA" + _hex()
        now = formatdate(usegmt=True)
        call = {
            "sid": sid,
            "date_created": now,
            "date_updated": now,
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": frm,
            "from_formatted": frm,
            "phone_number_sid": None,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "api_version": "2010-04-01",
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": self._uri(f"/Calls/{sid}.json"),
            "subresource_uris": {},
            "_time_limit": form.get("TimeLimit", [None])[0],
        }
        self.calls[sid] = call
        return 201, {k: v for k, v in call.items() if not k.startswith("_")}

    def _new_key(self, form: dict[str, list[str]]) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        alphabet = string.ascii_letters + string.digits
        return {
            "sid": "SK" + _hex(),
            "friendly_name": form.get("FriendlyName", [None])[0],
            "date_created": now,
            "date_updated": now,
            "secret": "".join(secrets.choice(alphabet) for _ in range(32)),
        }

    def _page(self, name: str, items: list[dict[str, Any]], path: str) -> dict[str, Any]:
        return {
            name: items,
            "end": max(0, len(items) - 1),
            "first_page_uri": f"{path}?PageSize=50&Page=0",
            "next_page_uri": None,
            "page": 0,
            "page_size": 50,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{path}?PageSize=50&Page=0",
        }


class FakeTwilioThread(FakeThread[FakeTwilio]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FakeTwilio(**kwargs))
