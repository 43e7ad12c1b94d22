"""Approve / deny links (docs/approvals.md, links): a real Keybrake holds a Stripe SDK call, the
approval.requested alert reaches a loopback Slack receiver and webhook, and the links decide it.

A link is its own authority (no admin token): opening it (GET) decides nothing; the page's form
(POST) decides once; a link changed in any signed part (signature, action, expiry, approval), or
opened after the hold ended, is refused and decides nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import stripe

from keybrake.proxy import approval
from tests.fakes.receiver import Receiver, ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.stripe_sdk import client, code_of

PUBLIC = "https://keybrake.example.com"
HOLD = {"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30}
FAST: dict[str, Any] = {"alert_interval_s": 0.05, "alert_retry_base_s": 0.1}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def slack() -> Iterator[ReceiverThread]:
    with ReceiverThread() as t:
        yield t


@pytest.fixture
def hook() -> Iterator[ReceiverThread]:
    with ReceiverThread() as t:
        yield t


def start(tmp_path: Path, fake_stripe: FakeStripe, slack: ReceiverThread, hook: ReceiverThread, **kw: Any) -> Any:
    kb = KeybrakeThread(tmp_path / "d", **{**FAST, **kw}).__enter__()
    kb.add_credential(fake_stripe.base_url)
    with kb.admin() as c:
        for kind, r in (("slack", slack), ("webhook", hook)):
            doc = {"type": kind, "url": r.base_url + "/in", "events": ["approval.requested"]}
            assert c.post("/v1/alerts", json=doc).status_code == 201
    return kb


@pytest.fixture
def kbl(tmp_path: Path, fake_stripe: FakeStripe, slack: ReceiverThread, hook: ReceiverThread) -> Iterator[Any]:
    """A Keybrake with KEYBRAKE_PUBLIC_URL set, Slack and webhook destinations for approval.requested."""
    kb = start(tmp_path, fake_stripe, slack, hook, public_url=PUBLIC)
    try:
        yield kb
    finally:
        kb.__exit__(None, None, None)


class Call:
    """A Stripe SDK call in a thread (it is held until decided): its customer or its error."""

    def __init__(self, kb: KeybrakeThread, key: dict[str, Any], email: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(kb, key, email), daemon=True)
        self.thread.start()

    def _run(self, kb: KeybrakeThread, key: dict[str, Any], email: str) -> None:
        try:
            self.result = client(kb, key).v1.customers.create(params={"email": email, "description": "<b>x</b>"})
        except BaseException as exc:
            self.error = exc

    def done(self, timeout: float = 20) -> Call:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the held call did not end"
        return self


def slack_texts(r: Receiver) -> list[str]:
    return [str((x.json or {}).get("text", "")) for x in r.requests if x.method == "POST"]


def links_of(text: str, kb: KeybrakeThread) -> dict[str, str]:
    """The message's Approve / Deny links, pointed at this server (PUBLIC is where operators reach it)."""
    found = dict((label.lower(), url) for url, label in re.findall(r"<([^|>]+)\|(Approve|Deny)>", text))
    assert set(found) == {"approve", "deny"}, text
    return {k: kb.admin_url + v[len(PUBLIC) :] for k, v in found.items()}


def hold(kb: KeybrakeThread, slack: ReceiverThread, email: str, policy: dict[str, Any] = HOLD) -> Any:
    key = kb.issue(policy, metadata={"agent_run_id": "run-7"})
    call = Call(kb, key, email)
    text = wait_for(lambda: next((t for t in slack_texts(slack.fake) if key["id"] in t), None), timeout=20)
    return call, text, links_of(text, kb), key


def stored(kb: KeybrakeThread, approval_id: str) -> tuple[Any, ...]:
    """(state, decided_by, reason) of an approval, read from the store as an operator could."""
    assert re.fullmatch(r"apr_[0-9A-Z]{26}", approval_id)
    sql = f"SELECT state, decided_by, reason FROM approvals WHERE id = '{approval_id}'"  # noqa: S608 (checked above)
    return tuple(kb.query(sql)[0])


def state(kb: KeybrakeThread, approval_id: str) -> str:
    return str(stored(kb, approval_id)[0])


def approval_id(link: str) -> str:
    return urlsplit(link).path.split("/")[3]


def with_query(link: str, **changes: str) -> str:
    u = urlsplit(link)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    return u._replace(query=urlencode({**q, **changes})).geturl()


def test_a_link_shows_a_page_on_get_and_decides_once_on_post(
    kbl: KeybrakeThread,
    fake_stripe: FakeStripe,
    slack: ReceiverThread,
    hook: ReceiverThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The holder reads the store only every 60 s: the call goes at once only if the link wakes it.
    monkeypatch.setattr(approval, "POLL_S", 60.0)
    call, text, links, key = hold(kbl, slack, "a@example.com")
    aid = approval_id(links["approve"])
    assert "*Amount:*" in text and "`/v1/customers`" in text and "`run-7`" in text and key["id"] in text
    # Slack's and the webhook's deliveries are separate: the webhook's may land a moment after Slack's.
    (sent,) = wait_for(
        lambda: [x.json for x in hook.fake.requests if (x.json or {}).get("type") == "approval.requested"], timeout=20
    )
    assert sent["data"]["links"] == {k: PUBLIC + v[len(kbl.admin_url) :] for k, v in links.items()}
    page = httpx.get(links["approve"])  # what a chat unfurler or a mail scanner does: decides nothing
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "<form method=post" in page.text and "/v1/customers" in page.text and "run-7" in page.text
    time.sleep(0.5)
    assert state(kbl, aid) == "pending" and call.thread.is_alive() and not fake_stripe.requests
    done = httpx.post(links["approve"], content=b"", headers=FORM)
    assert done.status_code == 200 and "Approved" in done.text, done.text
    call.done(timeout=10)
    assert call.error is None and call.result.email == "a@example.com"
    assert [r.path for r in fake_stripe.requests] == ["/v1/customers"]
    assert stored(kbl, aid) == ("approved", "slack-link", None)
    again = httpx.post(links["approve"], headers=FORM)
    assert again.status_code == 409 and "Already approved" in again.text
    other = httpx.post(links["deny"], content=b"reason=late", headers=FORM)
    assert other.status_code == 409 and state(kbl, aid) == "approved"
    assert httpx.get(links["approve"]).status_code == 409


def test_a_changed_link_is_refused_and_a_deny_link_refuses_the_call(
    kbl: KeybrakeThread, fake_stripe: FakeStripe, slack: ReceiverThread
) -> None:
    call, _, links, _ = hold(kbl, slack, "b@example.com")
    aid = approval_id(links["deny"])
    sig = parse_qs(urlsplit(links["approve"]).query)["sig"][0]
    forged = [
        with_query(links["approve"], sig=("0" if sig[0] != "0" else "1") + sig[1:]),  # signature
        with_query(links["deny"], action="approve"),  # a deny link made into an approve link
        with_query(links["approve"], expires=str(int(parse_qs(urlsplit(links["approve"]).query)["expires"][0]) + 1)),
        with_query(links["approve"], sig=sig.upper()),
        links["approve"].split("&sig=")[0],  # no signature
        links["approve"] + "&action=approve",  # a parameter twice
        links["approve"].replace(aid, "apr_" + "0" * 26),  # another approval
    ]
    for url in forged:
        for answer in (httpx.get(url), httpx.post(url, headers=FORM)):
            assert answer.status_code == 403, (url, answer.status_code, answer.text)
            assert answer.headers["content-type"].startswith("text/html")
    assert state(kbl, aid) == "pending" and call.thread.is_alive()
    too_big = httpx.post(links["deny"], content=b"reason=" + b"x" * 9000, headers=FORM)
    assert too_big.status_code == 413
    assert (
        httpx.post(links["deny"], content=b'{"reason":"x"}', headers={"Content-Type": "application/json"}).status_code
        == 415
    )
    assert state(kbl, aid) == "pending"
    denied = httpx.post(links["deny"], content=urlencode({"reason": "not this customer"}).encode(), headers=FORM)
    assert denied.status_code == 200 and "Denied" in denied.text
    call.done()
    assert isinstance(call.error, stripe.StripeError) and code_of(call.error) == "approval_denied"
    assert "not this customer" in str(call.error.user_message)
    assert not fake_stripe.requests
    assert stored(kbl, aid) == ("denied", "slack-link", "not this customer")
    assert httpx.post(links["approve"], headers=FORM).status_code == 409


def test_a_link_opened_after_the_hold_ended_decides_nothing(kbl: KeybrakeThread, slack: ReceiverThread) -> None:
    call, _, links, _ = hold(kbl, slack, "c@example.com", {**HOLD, "approval_timeout_seconds": 1})
    call.done()
    assert isinstance(call.error, stripe.StripeError) and code_of(call.error) == "approval_timeout"
    for answer in (httpx.get(links["approve"]), httpx.post(links["approve"], headers=FORM)):
        assert answer.status_code == 403 and "expired" in answer.text
    assert state(kbl, approval_id(links["approve"])) == "expired"


def test_only_the_exact_link_path_passes_the_gate_without_a_token(kbl: KeybrakeThread) -> None:
    aid = "apr_01KBC3Y8N4J6W2Q5R7T9V0X1Z3"
    query = "?action=approve&expires=99999999999999&sig=" + "0" * 64
    base = kbl.admin_url
    assert httpx.get(f"{base}/v1/approvals/{aid}/decide{query}").status_code == 403  # the link's own refusal
    assert httpx.post(f"{base}/v1/approvals/{aid}/decide{query}", headers=FORM).status_code == 403
    near = [
        ("GET", f"/v1/approvals/{aid}/decide/"),
        ("GET", f"/v1/approvals/{aid}/decidex"),
        ("GET", f"/v1/approvals/{aid}/decide/x"),
        ("GET", f"/v1/approvals/{aid.lower()}/decide"),
        ("GET", f"/v1/approvals/{aid}x/decide"),
        ("GET", f"/v1/approvals/{aid}"),
        ("GET", "/v1/approvals"),
        ("POST", f"/v1/approvals/{aid}/approve"),
        ("POST", f"/v1/approvals/{aid}/deny"),
        ("PUT", f"/v1/approvals/{aid}/decide"),
        ("DELETE", f"/v1/approvals/{aid}/decide"),
        ("HEAD", f"/v1/approvals/{aid}/decide"),
        ("GET", f"/v1/approvals/{aid}/decide%20"),
        ("GET", f"/v1/keys/{aid}/decide"),
    ]
    for method, path in near:
        answer = httpx.request(method, base + path + query)
        # the gate's refusal, before any route: 401, or 429 once this address has failed 10 times
        assert answer.status_code in (401, 429), (method, path, answer.status_code)
        if method != "HEAD":
            code = answer.json()["error"]["code"]
            assert code == ("admin_token_invalid" if answer.status_code == 401 else "too_many_auth_failures")


def test_without_a_public_url_the_message_says_how_to_decide(
    tmp_path: Path, fake_stripe: FakeStripe, slack: ReceiverThread, hook: ReceiverThread
) -> None:
    kb = start(tmp_path, fake_stripe, slack, hook)
    try:
        key = kb.issue({**HOLD, "approval_timeout_seconds": 2})
        call = Call(kb, key, "d@example.com")
        text = wait_for(lambda: next((t for t in slack_texts(slack.fake) if key["id"] in t), None), timeout=20)
        sent = wait_for(lambda: [x.json for x in hook.fake.requests if (x.json or {}).get("type")])
        aid = sent[0]["data"]["approval_id"]
        assert "<" not in text and f"keybrake approvals approve {aid}" in text and "KEYBRAKE_PUBLIC_URL" in text
        assert sent[0]["data"]["links"] is None
        call.done()
        assert isinstance(call.error, stripe.StripeError) and code_of(call.error) == "approval_timeout"
    finally:
        kb.__exit__(None, None, None)


def test_the_links_are_served_where_the_admin_api_is(
    tmp_path: Path, fake_stripe: FakeStripe, slack: ReceiverThread, hook: ReceiverThread
) -> None:
    kb = start(tmp_path, fake_stripe, slack, hook, public_url=PUBLIC, admin_port=0)
    try:
        assert kb.admin_url != kb.url
        call, _, links, _ = hold(kb, slack, "e@example.com")
        on_proxy = httpx.get(kb.url + links["approve"][len(kb.admin_url) :])
        assert on_proxy.status_code == 404 and state(kb, approval_id(links["approve"])) == "pending"
        assert httpx.post(links["approve"], headers=FORM).status_code == 200
        call.done()
        assert call.error is None
    finally:
        kb.__exit__(None, None, None)
