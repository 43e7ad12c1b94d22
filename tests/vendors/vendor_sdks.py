"""The vendors' official Python SDKs (stripe, twilio, resend) with their HTTP client replaced by one
that records the request each would send and answers a stub: the reference model the MCP tool
requests are compared against (tests/vendors/test_tool_requests.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import resend
import stripe
from resend.http_client import HTTPClient as ResendHTTPClient
from twilio.http import HttpClient as TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

# A Twilio Account SID: the tests build requests with it as the vault key's id, where the SDK puts it.
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


@dataclass(frozen=True)
class Sent:
    """One request as the SDK put it on the wire: `path` and `query` as in the URL (percent-encoded),
    `body` the encoded body (b"" when none), `headers` with lower-case names."""

    method: str
    path: str
    query: str
    body: bytes
    headers: Mapping[str, str]


def _body(body: Any) -> bytes:
    """A prepared requests body (str, bytes or None) as bytes."""
    return body if isinstance(body, bytes) else (body or "").encode()


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.query


class _StripeRecorder(stripe.HTTPClient):
    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[str, int, Mapping[str, str]]:
        path, query = _split(url)
        body = post_data.encode() if isinstance(post_data, str) else (post_data or b"")
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        self.sent.append(Sent(method.upper(), path, query, body, hdrs))
        return json.dumps({"id": "x"}), 200, {}


# Tool name → how stripe-python's StripeClient makes that call: (client, path id, params, options).
StripeCall = Callable[[stripe.StripeClient, str, dict[str, Any], dict[str, Any]], Any]
STRIPE_CALLS: dict[str, StripeCall] = {
    "stripe_create_customer": lambda c, _i, p, o: c.v1.customers.create(p, o),  # type: ignore[arg-type]
    "stripe_retrieve_customer": lambda c, i, p, o: c.v1.customers.retrieve(i, p, o),  # type: ignore[arg-type]
    "stripe_list_customers": lambda c, _i, p, o: c.v1.customers.list(p, o),  # type: ignore[arg-type]
    "stripe_create_payment_intent": lambda c, _i, p, o: c.v1.payment_intents.create(p, o),  # type: ignore[arg-type]
    "stripe_confirm_payment_intent": lambda c, i, p, o: c.v1.payment_intents.confirm(i, p, o),  # type: ignore[arg-type]
    "stripe_capture_payment_intent": lambda c, i, p, o: c.v1.payment_intents.capture(i, p, o),  # type: ignore[arg-type]
    "stripe_retrieve_payment_intent": lambda c, i, p, o: c.v1.payment_intents.retrieve(i, p, o),  # type: ignore[arg-type]
    "stripe_create_refund": lambda c, _i, p, o: c.v1.refunds.create(p, o),  # type: ignore[arg-type]
    "stripe_retrieve_charge": lambda c, i, p, o: c.v1.charges.retrieve(i, p, o),  # type: ignore[arg-type]
    "stripe_list_charges": lambda c, _i, p, o: c.v1.charges.list(p, o),  # type: ignore[arg-type]
    "stripe_create_invoice_item": lambda c, _i, p, o: c.v1.invoice_items.create(p, o),  # type: ignore[arg-type]
    "stripe_create_invoice": lambda c, _i, p, o: c.v1.invoices.create(p, o),  # type: ignore[arg-type]
    "stripe_finalize_invoice": lambda c, i, p, o: c.v1.invoices.finalize_invoice(i, p, o),  # type: ignore[arg-type]
    "stripe_list_invoices": lambda c, _i, p, o: c.v1.invoices.list(p, o),  # type: ignore[arg-type]
    "stripe_create_subscription": lambda c, _i, p, o: c.v1.subscriptions.create(p, o),  # type: ignore[arg-type]
    "stripe_cancel_subscription": lambda c, i, p, o: c.v1.subscriptions.cancel(i, p, o),  # type: ignore[arg-type]
    "stripe_list_subscriptions": lambda c, _i, p, o: c.v1.subscriptions.list(p, o),  # type: ignore[arg-type]
}


def stripe_sent(tool: str, path_id: str, params: dict[str, Any], idempotency_key: str | None) -> Sent:
    """The one request stripe-python sends for `tool`'s call with these parameters."""
    recorder = _StripeRecorder()
    client = stripe.StripeClient("sk_test_reference", http_client=recorder, max_network_retries=0)
    options = {"idempotency_key": idempotency_key} if idempotency_key is not None else {}
    STRIPE_CALLS[tool](client, path_id, params, options)
    assert len(recorder.sent) == 1, recorder.sent
    return recorder.sent[0]


class _TwilioRecorder(TwilioHttpClient):  # type: ignore[misc]  # twilio-python is untyped
    def __init__(self) -> None:
        super().__init__(logger=None, is_async=False)
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        # Encoded exactly as the SDK's default client (requests) encodes `params` and `data`.
        prepared = requests.Request(method, uri, params=cast(Any, params), data=data or None).prepare()
        path, query = _split(prepared.url or "")
        body = _body(prepared.body)
        self.sent.append(Sent(method.upper(), path, query, body, {k.lower(): v for k, v in (headers or {}).items()}))
        return TwilioResponse(200, json.dumps({"sid": "SMx", "account_sid": ACCOUNT_SID}))


def twilio_kwarg(name: str) -> str:
    """twilio-python's keyword for a Twilio parameter: `MediaUrl` → `media_url`, `From` → `from_`."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return "from_" if snake == "from" else snake


def twilio_sent(tool: str, path_id: str, params: dict[str, Any]) -> Sent:
    """The one request twilio-python sends for `tool`'s call (parameters by Twilio's names)."""
    recorder = _TwilioRecorder()
    client = TwilioClient("ACreference", "token", account_sid=ACCOUNT_SID, http_client=recorder)
    account = client.api.v2010.accounts(ACCOUNT_SID)
    kwargs = {twilio_kwarg(k): v for k, v in params.items()}
    if tool == "twilio_send_sms":
        account.messages.create(**kwargs)
    elif tool == "twilio_place_call":
        account.calls.create(**kwargs)
    elif tool == "twilio_fetch_message":
        assert not kwargs, kwargs
        account.messages(path_id).fetch()
    else:
        raise AssertionError(f"no twilio-python call for {tool}")
    assert len(recorder.sent) == 1, recorder.sent
    return recorder.sent[0]


class _ResendRecorder(ResendHTTPClient):
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        prepared = requests.Request(method.upper(), url, json=cast(Any, json), data=data).prepare()
        path, query = _split(prepared.url or "")
        body = _body(prepared.body)
        self.sent.append(Sent(method.upper(), path, query, body, {k.lower(): v for k, v in headers.items()}))
        reply: Any = {"data": [{"id": "x"}]} if path.endswith("/batch") else {"id": "x"}
        return _json_bytes(reply), 200, {"content-type": "application/json"}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


@contextmanager
def _resend_client() -> Iterator[_ResendRecorder]:
    recorder = _ResendRecorder()
    saved = resend.api_key, resend.default_http_client
    resend.api_key, resend.default_http_client = "re_reference", recorder
    try:
        yield recorder
    finally:
        resend.api_key, resend.default_http_client = saved


def resend_sent(tool: str, params: Any, idempotency_key: str | None) -> Sent:
    """The one request resend-python sends for `tool`'s call (`params`: the email, or the list)."""
    options: Any = {"idempotency_key": idempotency_key} if idempotency_key is not None else None
    with _resend_client() as recorder:
        if tool == "resend_send_email":
            resend.Emails.send(params, options)
        elif tool == "resend_send_batch":
            resend.Batch.send(params, options)
        else:
            raise AssertionError(f"no resend-python call for {tool}")
    assert len(recorder.sent) == 1, recorder.sent
    return recorder.sent[0]
