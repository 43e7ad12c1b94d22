"""The fake Twilio server: routes, Basic auth, forced answers, JSON and XML answers."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element, SubElement, tostring

from aiohttp import web

from tests.fakes.base import FakeThread, RecordedRequest
from tests.fakes.twilio_server.calls import CallEndpoints
from tests.fakes.twilio_server.messages import MessageEndpoints
from tests.fakes.twilio_server.wire import (
    API,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
    Answer,
    Params,
    TwilioError,
    _camel,
    _hex,
    _not_found,
    _xml_fields,
)

Handler = Callable[[Params, Params, str], Answer]


class FakeTwilio(MessageEndpoints, CallEndpoints):
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
        super().__init__(
            account_sid=account_sid, auth_token=auth_token, api_key_sid=api_key_sid, api_key_secret=api_key_secret
        )
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
