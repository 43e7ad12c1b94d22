"""The demo's Resend sandbox answers in Resend's documented shapes: the official resend-python SDK
reads its answers and errors, and Keybrake's own Resend vendor code parses, prices (per
recipient) and reads them as it does the real Resend's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import resend
from resend.exceptions import InvalidApiKeyError, MissingApiKeyError, MissingRequiredFieldsError, ResendError

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.demo.agent import denial_code
from keybrake.demo.sandbox_resend import EMAIL_USD, ResendSandbox
from keybrake.vendors.resend import Resend

pytestmark = pytest.mark.store_free
SENDER = "Acme Billing <billing@acme.test>"


@pytest.fixture
def sdk(resend_sandbox: ResendSandbox) -> Iterator[ResendSandbox]:
    """resend-python's module settings pointed at the sandbox, restored afterwards."""
    saved = resend.api_key, resend.api_url
    resend.api_key, resend.api_url = resend_sandbox.api_key, resend_sandbox.base_url
    try:
        yield resend_sandbox
    finally:
        resend.api_key, resend.api_url = saved


def _email(**extra: Any) -> Any:
    return {"from": SENDER, "to": ["ap@customer.test"], "cc": ["cfo@customer.test", "Bee <b@customer.test>"],
            "subject": "Invoice", "text": "Ready.", **extra}  # fmt: skip


def test_the_sdk_sends_reads_and_is_refused_as_by_resend(sdk: ResendSandbox) -> None:
    sent = resend.Emails.send(_email())
    assert sent["id"] in sdk.emails
    got: dict[str, Any] = dict(resend.Emails.get(sent["id"]))
    assert (got["object"], got["id"], got["from"], got["to"], got["cc"], got["bcc"]) == (
        "email", sent["id"], SENDER, ["ap@customer.test"], ["cfo@customer.test", "Bee <b@customer.test>"], None
    )  # fmt: skip
    assert (sdk.sent, sdk.billed_usd) == (3, 3 * EMAIL_USD)
    quoted = resend.Emails.send(_email(to='"Customer, AP" <ap@customer.test>', cc=None))
    assert sdk.recipients(sdk.emails[quoted["id"]]) == 1
    with pytest.raises(MissingRequiredFieldsError) as no_to:
        resend.Emails.send({"from": SENDER, "subject": "x", "text": "y"})  # type: ignore[typeddict-item]
    assert (no_to.value.code, no_to.value.error_type, no_to.value.message) == (
        422, "missing_required_field", "Missing `to` field."
    )  # fmt: skip
    with pytest.raises(ResendError) as bad:
        resend.Emails.send(_email(to="a@x.test, b@x.test"))
    assert (bad.value.code, bad.value.error_type) == (422, "validation_error") and "`to`" in bad.value.message
    with pytest.raises(ResendError) as gone:
        resend.Emails.get("4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    assert (gone.value.code, gone.value.error_type) == (404, "not_found")
    resend.api_key = "re_" + "x" * 32
    with pytest.raises(InvalidApiKeyError) as wrong:
        resend.Emails.send(_email())
    assert (wrong.value.code, wrong.value.error_type) == (403, "invalid_api_key")
    resend.api_key = ""
    with pytest.raises(MissingApiKeyError) as missing:
        resend.Emails.send(_email())
    assert (missing.value.code, missing.value.error_type) == (401, "missing_api_key")
    assert len(sdk.emails) == 2


def test_an_idempotency_key_replays_the_first_answer(sdk: ResendSandbox) -> None:
    opts: Any = {"idempotency_key": "invoice-8f3c"}
    one, two = resend.Emails.send(_email(), opts), resend.Emails.send(_email(), opts)
    assert one["id"] == two["id"] and list(sdk.emails) == [one["id"]]
    with pytest.raises(ResendError) as other:
        resend.Emails.send(_email(subject="Other"), opts)
    assert (other.value.code, other.value.error_type) == (409, "invalid_idempotent_request")


def _proxy_request(doc: Any) -> ProxyRequest:
    body = json.dumps(doc).encode()
    return ProxyRequest("POST", b"/emails", b"", (("content-type", "application/json"),), body, "127.0.0.1")


def test_keybrake_prices_the_sandbox_send_per_recipient(sdk: ResendSandbox) -> None:
    """Keybrake's parse counts the recipients the sandbox delivers to, prices them at the rate the
    demo sets (KEYBRAKE_RESEND_RATE_USD = the sandbox's price per email) and reads the email's id."""
    v = Resend(EMAIL_USD)
    doc = _email(bcc="ap@customer.test")  # a repeated address is one recipient, for both
    vreq = v.parse(_proxy_request(doc), ("emails",))
    est = v.estimate(vreq, {"usd": Decimal(1)})
    answer = resend.Emails.send(doc)
    assert (est.pricing, est.sends, est.amount) == ("priced", sdk.sent, int(sdk.billed_usd * 1_000_000))
    cost = v.cost(vreq, est, 200, {}, dict(answer), {"usd": Decimal(1)})
    assert (cost.cost_usd, cost.cost_source, cost.vendor_object_id) == (est.amount, "flat_rate", answer["id"])


def test_keybrake_reads_the_sandbox_refusals(resend_sandbox: ResendSandbox) -> None:
    """A wrong key is the credential's fault; Keybrake's own refusal in Resend's shape reads back."""
    v = Resend(EMAIL_USD)
    ok = httpx.post(
        resend_sandbox.base_url + "/emails",
        json=_email(),
        headers={"Authorization": f"Bearer {resend_sandbox.api_key}"},
    )
    assert ok.status_code == 200 and list(ok.json()) == ["id"]  # the documented answer: the id alone
    wrong = httpx.post(
        resend_sandbox.base_url + "/emails", json=_email(), headers={"Authorization": "Bearer re_nope1234"}
    )
    assert wrong.status_code == 403 and v.credential_rejected(wrong.status_code, wrong.json())
    assert denial_code(wrong.json()) == (None, "API key is invalid.")
    rendered = v.render_denial(Denial("send_cap_exceeded", "Do not retry."), {"request_id": "kbr_1"})
    assert denial_code(rendered.body) == ("send_cap_exceeded", "Do not retry.")
