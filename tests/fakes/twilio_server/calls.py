"""Calls: create (with ``Twiml``, ``Url`` or ``ApplicationSid``), fetch, list, update, delete."""

from __future__ import annotations

from typing import Any

from tests.fakes.twilio_server.state import TwilioState
from tests.fakes.twilio_server.wire import (
    API_VERSION,
    Answer,
    Params,
    TwilioError,
    _int,
    _now,
    _one,
    _public,
    _us_format,
    new_sid,
)


class CallEndpoints(TwilioState):
    """``/Calls``."""

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
