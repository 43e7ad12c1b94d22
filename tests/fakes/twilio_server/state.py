"""What the fake Twilio holds (messages, calls, keys by SID), the test hooks that change it,
and the paging and lookups every endpoint shares."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeServer
from tests.fakes.twilio_server.wire import (
    API,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
    Answer,
    Params,
    TwilioError,
    _int,
    _not_found,
    _now,
    _public,
    error_body,
    new_sid,
)


class TwilioState(FakeServer):
    """The fake's objects (dicts as answered, plus bookkeeping keys starting with ``_``), by SID."""

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

    def _message(self, sid: str) -> dict[str, Any]:
        if sid not in self.messages:
            raise _not_found(self._uri(f"/Messages/{sid}.json"))
        return self.messages[sid]

    def _call(self, sid: str) -> dict[str, Any]:
        if sid not in self.calls:
            raise _not_found(self._uri(f"/Calls/{sid}.json"))
        return self.calls[sid]

    def _key(self, sid: str) -> dict[str, Any]:
        if sid not in self.keys:
            raise _not_found(self._uri(f"/Keys/{sid}.json"))
        return self.keys[sid]
