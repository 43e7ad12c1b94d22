"""A small in-memory fake of Twilio's REST API 2010-04-01 on loopback, for tests.

It speaks the wire format twilio-python uses (HTTP Basic auth, form-encoded bodies with list
parameters as repeated keys such as ``MediaUrl=a&MediaUrl=b``, JSON answers) and answers in the
shapes of Twilio's OpenAPI spec (twilio/twilio-oai `spec/json/twilio_api_v2010.json`, twilio-oai
d50069b4): 201 on create, 200 on fetch, list and update, 204 with no body on delete, errors as
``{"code", "message", "more_info", "status"}``, a ``Twilio-Request-Id: RQ<32 hex>`` header and
``Content-Type: application/json`` on every answer.

Endpoints, all under ``/2010-04-01/Accounts/{AccountSid}``:

- ``.json``: fetch the Account. It carries ``auth_token``, as Twilio's does.
- ``/Messages.json`` (create, list) and ``/Messages/{Sid}.json`` (fetch, update, delete).
- ``/Calls.json`` (create, list) and ``/Calls/{Sid}.json`` (fetch, update, delete).
- ``/Keys.json`` (create, list) and ``/Keys/{Sid}.json`` (fetch, delete). A created key carries
  ``secret`` (only at creation) and authenticates at once; a deleted one no longer does.

Every resource also answers with ``.xml`` or no extension, as Twilio's 2010 API does (XML is its
default representation): the same operation, answered as ``application/xml`` in Twilio's XML
shape — ``<TwilioResponse>`` around ``<Message>``, ``<Call>``, ``<Account>`` or ``<Key>`` with
CamelCase element names (``<Sid>``, ``<DateCreated>``, ``<Price/>`` for null), lists as
``<Messages page="0" pagesize="50" …>`` with one element per item, errors as ``<RestException>``
with ``<Code>``, ``<Message>``, ``<MoreInfo>``, ``<Status>``. Forced answers (``fail_next``) are
always JSON.

Anything else is Twilio's 404 (code 20404); a known path with another method is 405 (20004).

Cost behaviour, as Twilio's (Twilio's docs): a message or call is created with
``price: null``; ``set_price()`` / ``price_all()`` make a later fetch show a negative decimal
string in ``price_unit`` (e.g. "-0.00790"). ``num_segments`` is counted as Twilio does: GSM-7
160 / 153 per segment (extension characters take two septets), otherwise UCS-2 70 / 67 UTF-16
units, never splitting a character; a message with media is one MMS.

Errors the fake raises itself (codes from Twilio's error dictionary and its real answers):

- 401 ``20003`` "Authenticate": no or bad Basic credentials, or a path naming an account other
  than the fake's ("using subaccount credentials to access master account" is a documented
  cause of 20003). Recorded before the check, with the decoded username and password.
- 404 ``20404``: unknown path or unknown SID. 405 ``20004``: method not allowed.
- Messages create: 400 ``21604`` no To, ``21603`` no From and no MessagingServiceSid,
  ``21602`` no Body, MediaUrl or ContentSid, ``21617`` Body over 1600 characters.
- Calls create: 400 ``21201`` no To, ``21213`` no From, ``21205`` none of Url, Twiml or
  ApplicationSid.
- 400 ``20001`` for a value the fake cannot take (non-integer TimeLimit or PageSize, a message
  update to a non-empty Body or to a Status other than "canceled").

Deliberately looser than Twilio: phone numbers, URLs and SIDs in parameters are not validated,
messages can be redacted, canceled or deleted in any state, DateSent / StartTime / EndTime list
filters are ignored, and standard API keys may use the Account and Keys endpoints.

Usage, async::

    async with FakeTwilio() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeTwilioThread() as t:
        ...t.base_url, t.fake.requests, t.fake.set_price(sid)...
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.etree.ElementTree import Element, SubElement, tostring

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest

DEFAULT_ACCOUNT_SID = "AC" + "5ca1ab1e" * 4
DEFAULT_AUTH_TOKEN = "a11ce" + "0" * 22 + "b0b00"
DEFAULT_API_KEY_SID = "SK" + "be11" * 8
DEFAULT_API_KEY_SECRET = "Sk3yS3cretSk3yS3cretSk3yS3cret12"

API_VERSION = "2010-04-01"
API = f"/{API_VERSION}"
DOCS = "https://www.twilio.com/docs/errors/"

Params = dict[str, list[str]]
Answer = tuple[int, Any]

_ALNUM = string.ascii_letters + string.digits
# GSM 03.38: the basic character set, and the extension table (escape + character: two septets)
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
# default error for a forced answer with only a status (``fail_next(429)``)
_DEFAULT_CODES = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    503: 20503,
}
_MESSAGE_BODY_LIMIT = 1600


def _hex(n: int = 32) -> str:
    return secrets.token_hex(n // 2)


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 lowercase hex digits (``SM``, ``MM``, ``CA``, ``SK``...)."""
    return prefix + _hex()


def _now() -> str:
    """RFC 2822, UTC, as Twilio writes it: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def error_body(status: int, code: int | None = None, message: str | None = None) -> dict[str, Any]:
    """Twilio's error document; ``code`` and ``message`` default from ``status``."""
    code = code if code is not None else _DEFAULT_CODES.get(status, 20500)
    if message is None:
        message = "Authenticate" if code == 20003 else HTTPStatus(status).phrase
    return {"code": code, "message": message, "more_info": f"{DOCS}{code}", "status": status}


class TwilioError(Exception):
    """Raised by handlers; becomes :func:`error_body` with ``status``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(status, code, message)


def _not_found(path: str) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


# --- GSM-7 / UCS-2 segments ------------------------------------------------------------------


def encoding(body: str) -> str:
    """``"GSM"`` when every character is in the GSM 03.38 alphabet (with extension), else ``"UCS-2"``."""
    return "GSM" if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body) else "UCS-2"


def num_segments(body: str) -> int:
    """How many SMS segments Twilio bills for ``body``.

    GSM-7: 160 septets in one segment, else 153 per segment; extension characters take two.
    UCS-2: 70 UTF-16 units in one segment, else 67; characters outside the BMP take two. A
    character (escape pair or surrogate pair) is never split across segments. Empty is one.
    """
    if encoding(body) == "GSM":
        costs, single, multi = [2 if ch in _GSM_EXTENSION else 1 for ch in body], 160, 153
    else:
        costs, single, multi = [2 if ord(ch) > 0xFFFF else 1 for ch in body], 70, 67
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments


def _us_format(number: str) -> str:
    """``+14155550100`` -> ``(415) 555-0100`` as in ``to_formatted``; other numbers unchanged."""
    m = re.fullmatch(r"\+1(\d{3})(\d{3})(\d{4})", number)
    return f"({m[1]}) {m[2]}-{m[3]}" if m else number


# --- form parameters -------------------------------------------------------------------------


def _one(p: Params, name: str) -> str | None:
    """The first value of ``name`` (Twilio takes the first of a repeated scalar), or None."""
    values = p.get(name)
    return values[0] if values else None


def _int(p: Params, name: str) -> int | None:
    value = _one(p, name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise TwilioError(400, 20001, f"{name} must be an integer")
    return int(value)


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without the fake's bookkeeping keys (those starting with ``_``)."""
    out: dict[str, Any] = json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))
    return out


def _camel(name: str) -> str:
    """``date_created`` -> ``DateCreated``, as in Twilio's XML representation."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _xml_fields(parent: Element, doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        child = SubElement(parent, _camel(key))
        if isinstance(value, dict):
            _xml_fields(child, value)
        elif value is not None:
            child.text = str(value)


# --- the server ------------------------------------------------------------------------------

Handler = Callable[[Params, Params, str], Answer]


class FakeTwilio(FakeServer):
    """A fake Twilio REST API (2010-04-01). ``await start()`` binds 127.0.0.1 on a free port.

    Credentials: HTTP Basic as ``account_sid:auth_token`` or ``api_key_sid:api_key_secret``
    (plus keys created through ``POST /Keys.json``).

    State, by SID: ``messages``, ``calls`` and ``keys`` (dicts as answered, plus bookkeeping keys
    starting with ``_``). ``requests`` lists every request as a :class:`RecordedRequest` (form
    body parsed into ``dict[str, list[str]]``, Basic credentials decoded), recorded before auth.

    Test controls (``reset()`` puts them back, keeping messages, calls and keys):

    - ``delay_seconds``: sleep this long before answering any request.
    - ``hang``: an ``asyncio.Event`` or ``threading.Event``; while it is set here and not yet
      set, every request waits for it before being answered (a call in flight).
    - ``next_status``: queue of ``(status, json_body)``; each request pops the first one and is
      answered with it instead (after recording it, before auth). ``fail_next(status, code,
      message)`` queues one in Twilio's error shape. Forced answers create nothing.
    - ``create_price_unit``: ``price_unit`` of a new message or call ("USD"; the spec's create
      examples show null, which Keybrake must also take).
    - ``set_price()`` / ``price_all()``: what a later fetch shows once Twilio has priced a send.
    """

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
        self.auth_token = auth_token
        self.api_key_sid = api_key_sid
        self.api_key_secret = api_key_secret
        # username -> password accepted in Basic auth
        self.logins: dict[str, str] = {account_sid: auth_token, api_key_sid: api_key_secret}
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.create_price_unit: str | None = "USD"
        self._counter = 0
        # (path after the account, without the extension; XML element of one object; handlers)
        routes: list[tuple[str, str, dict[str, Handler]]] = [
            (r"", "Account", {"GET": self._fetch_account}),
            (r"/Messages", "Message", {"POST": self._create_message, "GET": self._list_messages}),
            (
                r"/Messages/(?P<id>[^/.]+)",
                "Message",
                {"GET": self._fetch_message, "POST": self._update_message, "DELETE": self._delete_message},
            ),
            (r"/Calls", "Call", {"POST": self._create_call, "GET": self._list_calls}),
            (
                r"/Calls/(?P<id>[^/.]+)",
                "Call",
                {"GET": self._fetch_call, "POST": self._update_call, "DELETE": self._delete_call},
            ),
            (r"/Keys", "Key", {"POST": self._create_key, "GET": self._list_keys}),
            (r"/Keys/(?P<id>[^/.]+)", "Key", {"GET": self._fetch_key, "DELETE": self._delete_key}),
        ]
        self._routes = [(re.compile(pattern), noun, handlers) for pattern, noun, handlers in routes]

    # --- lifecycle (FakeServer) --------------------------------------------------------------

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test hooks --------------------------------------------------------------------------

    def reset(self) -> None:
        """Put the test controls back; messages, calls and keys stay."""
        super().reset()
        self.create_price_unit = "USD"

    def fail_next(self, status: int, code: int | None = None, message: str | None = None) -> None:
        """Answer the next request with ``status`` and Twilio's error body (e.g. 429 -> 20429)."""
        self.next_status.append((status, error_body(status, code, message)))

    def set_price(
        self,
        sid: str,
        price: str = "-0.00790",
        price_unit: str = "USD",
        status: str | None = None,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
        duration: int | None = None,
    ) -> None:
        """Price a message or call, as Twilio does some time after sending it.

        ``status`` defaults to "delivered" for a message and "completed" for a call. A failed
        message can be priced too (``status="failed", error_code=30007``): Twilio charges a
        processing fee for those. ``duration`` (seconds) applies to calls.
        """
        now = _now()
        if sid in self.messages:
            msg = self.messages[sid]
            msg.update(price=price, price_unit=price_unit, status=status or "delivered", date_updated=now)
            if msg["date_sent"] is None:
                msg["date_sent"] = now
            if error_code is not None:
                msg.update(error_code=error_code, error_message=error_message)
            return
        call = self.calls[sid]
        call.update(price=price, price_unit=price_unit, status=status or "completed", date_updated=now)
        if call["start_time"] is None:
            call["start_time"] = now
        if call["status"] in ("completed", "busy", "failed", "no-answer", "canceled"):
            call["end_time"] = call["end_time"] or now
            call["duration"] = str(duration) if duration is not None else call["duration"] or "0"
        elif duration is not None:
            call["duration"] = str(duration)

    def dial_leg(self, parent_sid: str, to: str) -> str:
        """A child call, as Twilio creates when the parent's TwiML `<Dial>`s `to` (direction
        `outbound-dial`, `parent_call_sid` set); it is priced on its own (``set_price``)."""
        parent = self.calls[parent_sid]
        sid = new_sid("CA")
        self.calls[sid] = {
            **parent,
            "sid": sid,
            "parent_call_sid": parent_sid,
            "direction": "outbound-dial",
            "to": to,
            "to_formatted": to,
            "price": None,
            "status": "in-progress",
            "uri": self._uri(f"/Calls/{sid}.json"),
            "_seq": self._seq(),
        }
        return sid

    def price_all(self, price: str = "-0.00790", price_unit: str = "USD") -> None:
        """Price every message and call that has no price yet."""
        for sid, obj in [*self.messages.items(), *self.calls.items()]:
            if obj["price"] is None:
                self.set_price(sid, price, price_unit)

    # --- plumbing ----------------------------------------------------------------------------

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        if body:
            rec.form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
            else:
                rec.username, rec.password = user, (password if sep else None)
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        headers = {"Twilio-Request-Id": "RQ" + _hex()}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(
            status=status, body=json.dumps(doc).encode(), headers=headers, content_type="application/json"
        )

    def reply_xml(self, status: int, doc: Any, noun: str) -> web.Response:
        """Twilio's XML representation of an answer (``.xml`` or no extension)."""
        headers = {"Twilio-Request-Id": "RQ" + _hex()}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        if status == 204:
            return web.Response(status=204, headers=headers)
        root = Element("TwilioResponse")
        if status >= 400:
            _xml_fields(SubElement(root, "RestException"), doc)
        else:
            items = next((k for k, v in doc.items() if isinstance(v, list)), None)
            if items is None:
                _xml_fields(SubElement(root, noun), doc)
            else:
                paging = {_camel(k).lower(): str(v) for k, v in doc.items() if k != items and v is not None}
                listing = SubElement(root, _camel(items), paging)
                for item in doc[items]:
                    _xml_fields(SubElement(listing, noun), item)
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root)
        return web.Response(status=status, body=body, headers=headers, content_type="application/xml")

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        query: Params = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        path, fmt = request.path, "xml"
        for ext in (".json", ".xml"):
            if path.endswith(ext):
                path, fmt = path[: -len(ext)], ext[1:]
        noun = "Account"
        try:
            status, doc, noun = self._dispatch(request.method, path, request.path, rec, query)
        except TwilioError as exc:
            status, doc = exc.status, exc.body
        return self.reply(status, doc) if fmt == "json" else self.reply_xml(status, doc, noun)

    def _dispatch(
        self, method: str, path: str, full_path: str, rec: RecordedRequest, query: Params
    ) -> tuple[int, Any, str]:
        """Route ``path``, ``full_path`` without its extension (``.json``, ``.xml`` or none: one operation)."""
        if rec.username is None or rec.password is None or self.logins.get(rec.username) != rec.password:
            raise TwilioError(401, 20003, "Authenticate")
        m = re.fullmatch(rf"{API}/Accounts/(?P<sid>[^/.]+)(?P<rest>/.+)?", path)
        if m is None:
            raise _not_found(full_path)
        if m["sid"] != self.account_sid:
            raise TwilioError(401, 20003, "Authenticate")
        for pattern, noun, handlers in self._routes:
            route = pattern.fullmatch(m["rest"] or "")
            if route is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                raise TwilioError(405, 20004, "Method not allowed")
            status, doc = handler(rec.form, query, route.groupdict().get("id") or "")
            return status, doc, noun
        raise _not_found(full_path)

    # --- helpers -----------------------------------------------------------------------------

    def _uri(self, rest: str) -> str:
        return f"{API}/Accounts/{self.account_sid}{rest}"

    def _seq(self) -> int:
        self._counter += 1
        return self._counter

    def _page(
        self, key: str, items: list[dict[str, Any]], rest: str, query: Params, filters: tuple[str, ...]
    ) -> Answer:
        """Twilio's list page: newest first, ``PageSize`` (default 50, 1..1000) and ``Page``."""
        size = _int(query, "PageSize")
        size = 50 if size is None else size
        if not 1 <= size <= 1000:
            raise TwilioError(400, 20001, "PageSize must be between 1 and 1000")
        page = _int(query, "Page") or 0
        if page < 0:
            raise TwilioError(400, 20001, "Page must be a non-negative integer")
        kept = [(name, value) for name in filters for value in query.get(name, [])]
        path = self._uri(rest)

        def uri(number: int, token: str | None = None) -> str:
            q = [*kept, ("PageSize", str(size)), ("Page", str(number))]
            if token:
                q.append(("PageToken", token))
            return f"{path}?{urlencode(q)}"

        ordered = sorted(items, key=lambda o: o["_seq"], reverse=True)
        start = page * size
        chunk = ordered[start : start + size]
        more = start + size < len(ordered)
        return 200, {
            key: [_public(o) for o in chunk],
            "end": start + max(len(chunk) - 1, 0),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + chunk[-1]["sid"]) if more and chunk else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1, "PB" + chunk[0]["sid"] if chunk else None) if page > 0 else None,
            "start": start,
            "uri": uri(page),
        }

    # --- account -----------------------------------------------------------------------------

    def _fetch_account(self, _: Params, __: Params, ___: str) -> Answer:
        names = {
            "available_phone_numbers": "/AvailablePhoneNumbers.json",
            "calls": "/Calls.json",
            "conferences": "/Conferences.json",
            "incoming_phone_numbers": "/IncomingPhoneNumbers.json",
            "notifications": "/Notifications.json",
            "outgoing_caller_ids": "/OutgoingCallerIds.json",
            "recordings": "/Recordings.json",
            "transcriptions": "/Transcriptions.json",
            "addresses": "/Addresses.json",
            "signing_keys": "/SigningKeys.json",
            "connect_apps": "/ConnectApps.json",
            "sip": "/SIP.json",
            "authorized_connect_apps": "/AuthorizedConnectApps.json",
            "usage": "/Usage.json",
            "keys": "/Keys.json",
            "applications": "/Applications.json",
            "short_codes": "/SMS/ShortCodes.json",
            "queues": "/Queues.json",
            "messages": "/Messages.json",
            "balance": "/Balance.json",
        }
        created = "Thu, 30 Jul 2015 20:00:00 +0000"
        return 200, {
            "auth_token": self.auth_token,
            "date_created": created,
            "date_updated": created,
            "friendly_name": "Fake Twilio account",
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": "active",
            "subresource_uris": {name: self._uri(rest) for name, rest in names.items()},
            "type": "Full",
            "uri": self._uri(".json"),
        }

    # --- messages ----------------------------------------------------------------------------

    def _create_message(self, p: Params, _: Params, __: str) -> Answer:
        to = _one(p, "To")
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        sender, service = _one(p, "From") or None, _one(p, "MessagingServiceSid") or None
        if not sender and not service:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        body = _one(p, "Body") or ""
        media = [url for url in p.get("MediaUrl", []) if url]
        if not body and not media and not _one(p, "ContentSid"):
            raise TwilioError(400, 21602, "Message body is required.")
        if len(body) > _MESSAGE_BODY_LIMIT:
            raise TwilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        sid = new_sid("MM" if media else "SM")
        now = _now()
        msg: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": "1" if media or not body else str(num_segments(body)),
            "price": None,
            "price_unit": self.create_price_unit,
            "sid": sid,
            "status": "scheduled" if _one(p, "ScheduleType") == "fixed" else "queued",
            "subresource_uris": {
                "media": self._uri(f"/Messages/{sid}/Media.json"),
                "feedback": self._uri(f"/Messages/{sid}/Feedback.json"),
            },
            "to": to,
            "uri": self._uri(f"/Messages/{sid}.json"),
            "_media_urls": media,
            "_seq": self._seq(),
        }
        self.messages[sid] = msg
        created = _public(msg)
        del created["subresource_uris"]["feedback"]  # as in the spec's create examples
        return 201, created

    def _message(self, sid: str) -> dict[str, Any]:
        if sid not in self.messages:
            raise _not_found(self._uri(f"/Messages/{sid}.json"))
        return self.messages[sid]

    def _fetch_message(self, _: Params, __: Params, sid: str) -> Answer:
        return 200, _public(self._message(sid))

    def _list_messages(self, _: Params, q: Params, __: str) -> Answer:
        items = list(self.messages.values())
        for name, field in (("To", "to"), ("From", "from")):
            value = _one(q, name)
            if value is not None:
                items = [m for m in items if m[field] == value]
        return self._page("messages", items, "/Messages.json", q, ("To", "From", "DateSent", "DateSent<", "DateSent>"))

    def _update_message(self, p: Params, _: Params, sid: str) -> Answer:
        msg = self._message(sid)
        body, status = _one(p, "Body"), _one(p, "Status")
        if body is not None and body != "":
            raise TwilioError(400, 20001, "Body can only be set to an empty string (redaction)")
        if status is not None and status != "canceled":
            raise TwilioError(400, 20001, f"Invalid Status: {status}")
        if body == "":
            msg["body"] = ""
        if status == "canceled":
            msg["status"] = "canceled"
        msg["date_updated"] = _now()
        return 200, _public(msg)

    def _delete_message(self, _: Params, __: Params, sid: str) -> Answer:
        self._message(sid)
        del self.messages[sid]
        return 204, None

    # --- calls -------------------------------------------------------------------------------

    def _create_call(self, p: Params, _: Params, __: str) -> Answer:
        to, sender = _one(p, "To"), _one(p, "From")
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not sender:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not (_one(p, "Url") or _one(p, "Twiml") or _one(p, "ApplicationSid")):
            raise TwilioError(
                400, 21205, "Url parameter is required. For more information, see http://www.twilio.com/docs/api/twiml"
            )
        time_limit = _int(p, "TimeLimit")
        sid = new_sid("CA")
        now = _now()
        subresources = (
            "notifications:Notifications recordings:Recordings payments:Payments events:Events siprec:Siprec "
            "streams:Streams transcriptions:Transcriptions "
            "user_defined_message_subscriptions:UserDefinedMessageSubscriptions "
            "user_defined_messages:UserDefinedMessages"
        )
        call: dict[str, Any] = {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": sender,
            "from_formatted": _us_format(sender),
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": self.create_price_unit,
            "queue_time": "0",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {
                name: self._uri(f"/Calls/{sid}/{res}.json")
                for name, res in (item.split(":") for item in subresources.split())
            },
            "to": to,
            "to_formatted": _us_format(to),
            "trunk_sid": None,
            "uri": self._uri(f"/Calls/{sid}.json"),
            "_time_limit": time_limit,
            "_seq": self._seq(),
        }
        self.calls[sid] = call
        return 201, _public(call)

    def _call(self, sid: str) -> dict[str, Any]:
        if sid not in self.calls:
            raise _not_found(self._uri(f"/Calls/{sid}.json"))
        return self.calls[sid]

    def _fetch_call(self, _: Params, __: Params, sid: str) -> Answer:
        return 200, _public(self._call(sid))

    def _list_calls(self, _: Params, q: Params, __: str) -> Answer:
        items = list(self.calls.values())
        for name, field in (("To", "to"), ("From", "from"), ("Status", "status"), ("ParentCallSid", "parent_call_sid")):
            value = _one(q, name)
            if value is not None:
                items = [c for c in items if c[field] == value]
        return self._page("calls", items, "/Calls.json", q, ("To", "From", "ParentCallSid", "Status"))

    def _update_call(self, p: Params, _: Params, sid: str) -> Answer:
        call = self._call(sid)
        status = _one(p, "Status")
        if status is not None and status not in ("canceled", "completed"):
            raise TwilioError(400, 20001, f"Invalid Status: {status}")
        time_limit = _int(p, "TimeLimit")
        if time_limit is not None:
            call["_time_limit"] = time_limit
        if status is not None:
            call["status"] = status
            call["end_time"] = call["end_time"] or _now()
        call["date_updated"] = _now()
        return 200, _public(call)

    def _delete_call(self, _: Params, __: Params, sid: str) -> Answer:
        self._call(sid)
        del self.calls[sid]
        return 204, None

    # --- API keys ----------------------------------------------------------------------------

    def _create_key(self, p: Params, _: Params, __: str) -> Answer:
        now = _now()
        sid = new_sid("SK")
        key: dict[str, Any] = {
            "sid": sid,
            "friendly_name": _one(p, "FriendlyName"),
            "date_created": now,
            "date_updated": now,
            "_seq": self._seq(),
        }
        secret = "".join(secrets.choice(_ALNUM) for _ in range(32))
        self.keys[sid] = key
        self.logins[sid] = secret
        return 201, {**_public(key), "secret": secret}

    def _key(self, sid: str) -> dict[str, Any]:
        if sid not in self.keys:
            raise _not_found(self._uri(f"/Keys/{sid}.json"))
        return self.keys[sid]

    def _fetch_key(self, _: Params, __: Params, sid: str) -> Answer:
        return 200, _public(self._key(sid))

    def _list_keys(self, _: Params, q: Params, __: str) -> Answer:
        return self._page("keys", list(self.keys.values()), "/Keys.json", q, ())

    def _delete_key(self, _: Params, __: Params, sid: str) -> Answer:
        self._key(sid)
        del self.keys[sid]
        self.logins.pop(sid, None)
        return 204, None


class FakeTwilioThread(FakeThread[FakeTwilio]):
    """Runs a :class:`FakeTwilio` in its own event loop on a background thread.

    ``with FakeTwilioThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL,
    ``t.run(coro)`` runs a coroutine on the server's loop. ``fake.hang`` may be a
    ``threading.Event`` set from the test thread; ``hold()`` / ``release()`` do that for you.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        api_key_sid: str = DEFAULT_API_KEY_SID,
        api_key_secret: str = DEFAULT_API_KEY_SECRET,
    ) -> None:
        super().__init__(
            FakeTwilio(
                account_sid=account_sid,
                auth_token=auth_token,
                api_key_sid=api_key_sid,
                api_key_secret=api_key_secret,
            )
        )

    def __enter__(self) -> FakeTwilioThread:
        self.start()
        return self
