"""A Twilio sandbox: the 2010 REST API's Messages resource in memory, answering in the shapes of
Twilio's API reference (https://www.twilio.com/docs/messaging/api/message-resource): HTTP Basic
`AccountSid:AuthToken`, form-encoded `To`/`From`/`Body`, `201` with the Message (`sid` SM + 32 hex,
`status: queued`, `num_segments` as a decimal string, `price: null` until the message is sent),
and Twilio's error body `{"code", "message", "more_info", "status"}`. `deliver()` plays the
carrier's part: queued messages become `delivered` with their `price` (negative, `price_unit: USD`),
as a later fetch of the Message shows them."""

from __future__ import annotations

import base64
import secrets
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from keybrake.demo.sandbox import Sandbox

# Twilio's published price of one outbound SMS segment to a US number, in USD
# (https://www.twilio.com/en-us/sms/pricing/us), before carrier fees.
US_SMS_SEGMENT_USD = Decimal("0.0083")
# GSM-7 basic character set (3GPP TS 23.038) and its extension table (two septets each).
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


def segments(body: str) -> int:
    """How many SMS segments `body` takes: GSM-7 (160 septets, 153 per part when split) when every
    character is in the GSM-7 alphabet, else UCS-2 (70 UTF-16 units, 67 per part)."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in body):
        units, single, part = sum(2 if c in _GSM7_EXT else 1 for c in body), 160, 153
    else:
        units, single, part = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // part)


def _error(status: int, code: int, message: str) -> web.Response:
    doc = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(doc, status=status)


class TwilioSandbox(Sandbox):
    """Twilio in memory for one account. `account_sid` (AC + 32 hex) and `auth_token` (32 hex):
    the credentials it accepts. `messages`: every Message it created, by sid."""

    name = "twilio"

    def __init__(self) -> None:
        super().__init__()
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.messages: dict[str, dict[str, Any]] = {}

    @property
    def billed_usd(self) -> Decimal:
        """What the account is charged for every message it accepted (delivered or not yet), in USD."""
        return sum((US_SMS_SEGMENT_USD * int(m["num_segments"]) for m in self.messages.values()), Decimal(0))

    def routes(self, app: web.Application) -> None:
        base = "/2010-04-01/Accounts/{account}/Messages"
        app.router.add_post(base + ".json", self._create)
        app.router.add_get(base + "/{sid}.json", self._fetch)

    def deliver(self) -> int:
        """Mark every queued message delivered and priced, as Twilio does once the carrier accepts it.
        Returns how many changed."""
        changed = 0
        for m in self.messages.values():
            if m["status"] == "queued":
                m["status"], m["date_sent"] = "delivered", formatdate(usegmt=True)
                m["date_updated"] = m["date_sent"]
                m["price"] = str(-(US_SMS_SEGMENT_USD * int(m["num_segments"])).quantize(Decimal("0.00001")))
                changed += 1
        return changed

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    def _check(self, request: web.Request) -> web.Response | None:
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        if request.match_info["account"] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        form = {k: v[-1] for k, v in parse_qs((await request.read()).decode(), keep_blank_values=True).items()}
        to, sender, body = form.get("To"), form.get("From"), form.get("Body")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        sid, now = "SM" + secrets.token_hex(16), formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        message = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": sender, "messaging_service_sid": None,
            "num_media": "0", "num_segments": str(segments(body)), "price": None, "price_unit": "USD",
            "sid": sid, "status": "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")}, "to": to, "uri": uri,
        }  # fmt: skip
        self.messages[sid] = message
        return web.json_response(message, status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        message = self.messages.get(request.match_info["sid"])
        if message is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(message)
