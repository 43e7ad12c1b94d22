"""The account, messages and API keys."""

from __future__ import annotations

import secrets
from typing import Any

from tests.fakes.twilio_server.state import TwilioState
from tests.fakes.twilio_server.wire import (
    _ALNUM,
    _MESSAGE_BODY_LIMIT,
    API_VERSION,
    Answer,
    Params,
    TwilioError,
    _now,
    _one,
    _public,
    new_sid,
    num_segments,
)


class MessageEndpoints(TwilioState):
    """``/Accounts/{sid}.json``, ``/Messages`` and ``/Keys``."""

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

    def _fetch_key(self, _: Params, __: Params, sid: str) -> Answer:
        return 200, _public(self._key(sid))

    def _list_keys(self, _: Params, q: Params, __: str) -> Answer:
        return self._page("keys", list(self.keys.values()), "/Keys.json", q, ())

    def _delete_key(self, _: Params, __: Params, sid: str) -> Answer:
        self._key(sid)
        del self.keys[sid]
        self.logins.pop(sid, None)
        return 204, None
