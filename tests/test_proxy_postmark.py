"""postmarker through a running Keybrake (keybrake.integrations.postmark) against a fake Postmark
built from Postmark's API reference; Postmark is the built-in defined by postmark.toml."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from postmarker.exceptions import ClientError

from keybrake.config import from_env
from keybrake.integrations.postmark import KeybrakePostmarkError, client
from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, FakePostmark, FakePostmarkThread
from tests.harness import KeybrakeThread

SENDER = "Acme <bot@mail.acme.io>"
RATE = 0.0018  # the default KEYBRAKE_POSTMARK_USD_PER_EMAIL


@pytest.fixture
def fake_pm() -> Any:
    with FakePostmarkThread() as t:
        yield t.fake


@pytest.fixture
def kb(tmp_path: Path, fake_pm: FakePostmark) -> Any:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_pm.base_url, name="postmark", secret=DEFAULT_SERVER_TOKEN, vendor="postmark")
        yield server


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    return kb.issue(policy, vendor="postmark", label="test:mailer:run-1")


def msg(to: str, **extra: Any) -> dict[str, Any]:
    return {"From": SENDER, "To": to, "Subject": "Your receipt", "TextBody": "Thanks!", **extra}


def sends(fake: FakePostmark) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


def raw(kb: KeybrakeThread, key: dict[str, Any], path: str, body: Any, method: str = "POST") -> httpx.Response:
    return httpx.request(
        method, f"{kb.url}/postmark{path}", json=body, headers={"X-Postmark-Server-Token": key["key"]}, timeout=30
    )


def test_send_swaps_the_token_and_costs_the_rate_per_address(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(
        kb, daily_usd_cap=1, daily_send_cap=10, allowed_to_domains=["example.com"], allowed_from_domains=["*.acme.io"]
    )
    pm = client(kb.url, key["key"])
    sent = pm.emails.send(
        From=SENDER, To=["Ana <ana@example.com>", "bo@example.com"], Cc="Cy <cy@example.com>", Subject="s", TextBody="t"
    )
    assert sent["ErrorCode"] == 0 and sent["MessageID"] in fake_pm.messages
    (seen,) = sends(fake_pm)
    assert seen.path == "/email" and seen.headers["x-postmark-server-token"] == DEFAULT_SERVER_TOKEN
    assert key["key"] not in json.dumps([seen.headers, seen.body.decode()])
    (row,) = kb.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"]) == ("allowed", pytest.approx(3 * RATE))
    assert row["request_summary"] == {"endpoint": "POST /email", "items": 3}
    assert "Ana" not in json.dumps(row) and "example.com" not in json.dumps(row) and row["body_hash"]
    usage = kb.key(key["id"])["usage"]
    assert usage["daily_sends"]["used"] == 3


def test_the_operator_sets_the_per_email_price(tmp_path: Path, fake_pm: FakePostmark) -> None:
    priced = from_env({"KEYBRAKE_POSTMARK_USD_PER_EMAIL": "0.00125"}).vendor_settings
    with KeybrakeThread(tmp_path / "priced", vendor_settings=priced) as kb:
        kb.add_credential(fake_pm.base_url, name="postmark", secret=DEFAULT_SERVER_TOKEN, vendor="postmark")
        key = issue(kb, daily_usd_cap=1)
        client(kb.url, key["key"]).emails.send(**msg("a@example.com, b@example.com"))
        (row,) = kb.audit(key_id=key["id"])
        assert row["cost_usd"] == pytest.approx(0.0025)


def test_batches_and_templates_are_counted_per_address(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=100)
    pm = client(kb.url, key["key"])
    results = pm.emails.send_batch(msg("a@example.com, b@example.com"), msg("c@example.com", Bcc="d@example.com"))
    assert [r["ErrorCode"] for r in results] == [0, 0]
    one = {"From": SENDER, "To": "e@example.com", "TemplateAlias": "welcome", "TemplateModel": {"n": 1}}
    assert pm.emails.send_with_template(**one)["ErrorCode"] == 0  # postmarker posts /email/withTemplate/
    assert [r["ErrorCode"] for r in pm.emails.send_template_batch(one, {**one, "Cc": "f@example.com"})] == [0, 0]
    assert len(fake_pm.messages) == 5
    costs = sorted(r["cost_usd"] for r in kb.audit(key_id=key["id"]))
    assert costs == pytest.approx([RATE, 3 * RATE, 4 * RATE])
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 8


def test_one_outside_recipient_refuses_the_whole_batch(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, allowed_to_domains=["example.com"])
    pm = client(kb.url, key["key"])
    batch = [msg(f"u{i}@example.com") for i in range(9)] + [msg("u9@example.com", Bcc="Spy <spy@evil.io>")]
    with pytest.raises(ClientError) as exc:
        pm.emails.send_batch(*batch)
    assert exc.value.error_code == 403 and "evil.io" in str(exc.value)
    lower = raw(kb, key, "/email", {"from": SENDER, "to": "ok@example.com", "cc": "spy@evil.io", "textbody": "t"})
    assert lower.status_code == 403 and lower.json()["KeybrakeCode"] == "scope_violation"  # `cc` is `Cc`
    for path, body in (("/email", [msg("spy@evil.io")]), ("/email/batch", msg("spy@evil.io"))):  # other shapes
        wrong_shape = raw(kb, key, path, body)
        assert wrong_shape.status_code == 403 and wrong_shape.json()["KeybrakeCode"] == "scope_violation", path
    assert not sends(fake_pm)
    assert [r["verdict"] for r in kb.audit(key_id=key["id"])] == ["denied_scope_violation"] * 4


def test_case_twins_are_refused_not_guessed(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, allowed_to_domains=["example.com"])
    r = raw(kb, key, "/email", {**msg("ok@example.com"), "TO": "spy@evil.io"})
    assert r.status_code == 400 and isinstance(r.json()["ErrorCode"], int) and r.json()["Message"]
    assert not sends(fake_pm)


def test_a_custom_header_naming_recipients_is_refused_on_every_key(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1)  # no allowed_to_domains: the refusal does not depend on scope
    pm = client(kb.url, key["key"])
    for name in ("Bcc", " bcc ", "Resent-To", "X-Original-To"):
        with pytest.raises(ClientError) as exc:
            pm.emails.send(**msg("a@example.com", Headers={name: "spy@evil.io"}))
        assert exc.value.error_code == 403 and "neither scoped nor counted" in str(exc.value), name
    batch = [msg("a@example.com"), msg("b@example.com", Headers={"cc": "spy@evil.io"})]
    with pytest.raises(ClientError) as exc:
        pm.emails.send_batch(*batch)
    assert exc.value.error_code == 403
    assert not sends(fake_pm)
    pm.emails.send(**msg("a@example.com", Headers={"X-Campaign": "spring"}))  # other headers go through
    (sent,) = fake_pm.messages.values()
    assert sent["headers"] == [{"Name": "X-Campaign", "Value": "spring"}]


@pytest.mark.timing
def test_send_cap_and_usd_cap_are_exact_under_concurrency(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=20)
    pm = client(kb.url, key["key"])

    def send(i: int) -> int:
        try:
            pm.emails.send(**msg(f"u{i}@example.com"))
            return 0
        except ClientError as exc:
            return int(exc.error_code)

    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(send, range(40)))
    assert (outcomes.count(0), outcomes.count(429)) == (20, 20)
    assert len(fake_pm.messages) == 20
    sends_usage = kb.key(key["id"])["usage"]["daily_sends"]
    assert (sends_usage["limit"], sends_usage["used"]) == (20, 20)
    assert len(kb.audit(key_id=key["id"])) == 40  # one audit row per call, allowed or refused

    usd_key = issue(kb, daily_usd_cap=10 * RATE, daily_send_cap=1000)
    pm2 = client(kb.url, usd_key["key"])
    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(lambda i: _try(pm2, msg(f"v{i}@example.com")), range(30)))
    assert results.count(0) == 10 and len(fake_pm.messages) == 30
    assert kb.key(usd_key["id"])["usage"]["daily_usd"]["used"] == pytest.approx(10 * RATE)


def _try(pm: Any, message: dict[str, Any]) -> int:
    try:
        pm.emails.send(**message)
        return 0
    except ClientError as exc:
        return int(exc.error_code)


def test_a_postmark_refusal_costs_and_counts_nothing(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=2)
    pm = client(kb.url, key["key"])
    fake_pm.fail_next(422, 406, "You tried to send to a recipient that has been marked as inactive.")
    with pytest.raises(ClientError) as exc:
        pm.emails.send(**msg("a@example.com, b@example.com"))
    assert exc.value.error_code == 406  # Postmark's own answer, passed through
    usage = kb.key(key["id"])["usage"]
    assert (usage["daily_sends"]["used"], usage["daily_usd"]["used"]) == (0, 0)
    pm.emails.send(**msg("a@example.com, b@example.com"))  # the whole cap is still there
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 2


def test_revoke_takes_effect_on_the_next_request(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1)
    pm = client(kb.url, key["key"])
    pm.emails.send(**msg("a@example.com"))
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}", params={"reason": "incident 42"}).status_code == 200
    for _ in range(3):
        with pytest.raises(ClientError) as exc:
            pm.emails.send(**msg("a@example.com"))
        assert exc.value.error_code == 401 and "incident 42" in str(exc.value)
    assert len(sends(fake_pm)) == 1
    assert len(kb.audit(key_id=key["id"])) == 4


def test_guarded_endpoints_and_redacted_tokens(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1)
    for method, path in (("GET", "/server"), ("POST", "/webhooks"), ("GET", "/servers"), ("GET", "/domains")):
        r = raw(kb, key, path, {"Url": "https://evil.example/hook"} if method == "POST" else None, method)
        assert r.status_code == 403 and r.json()["KeybrakeCode"] == "endpoint_guarded", path
    assert not fake_pm.requests
    opened = issue(kb, daily_usd_cap=1, allowed_endpoints=["GET /server", "POST /webhooks", "GET /webhooks"])
    server = raw(kb, opened, "/server", None, "GET")
    assert server.status_code == 200 and DEFAULT_SERVER_TOKEN not in server.text
    hook = {"Url": "https://hooks.acme.io/pm", "HttpAuth": {"Username": "u", "Password": "s3cret"}}
    made = raw(kb, opened, "/webhooks", hook)
    assert made.status_code == 200 and "s3cret" not in made.text, made.text
    assert "s3cret" not in raw(kb, opened, "/webhooks", None, "GET").text


def test_token_in_the_wrong_place_and_the_real_token_are_refused(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1)
    url = f"{kb.url}/postmark/email"
    account = httpx.post(url, json=msg("a@example.com"), headers={"X-Postmark-Account-Token": key["key"]})
    assert account.status_code == 401 and account.json()["KeybrakeCode"] == "key_missing"
    real = httpx.post(url, json=msg("a@example.com"), headers={"X-Postmark-Server-Token": DEFAULT_SERVER_TOKEN})
    assert real.status_code == 401 and real.json()["KeybrakeCode"] == "key_invalid"
    form = httpx.post(url, data={"To": "a@example.com"}, headers={"X-Postmark-Server-Token": key["key"]})
    assert form.status_code == 415
    assert not fake_pm.requests
    both = {"X-Postmark-Server-Token": key["key"], "X-Postmark-Account-Token": "agents-own-account-token"}
    assert httpx.post(url, json=msg("a@example.com"), headers=both).status_code == 200
    (seen,) = fake_pm.requests
    assert "x-postmark-account-token" not in seen.headers  # never forwarded
    assert seen.headers["x-postmark-server-token"] == DEFAULT_SERVER_TOKEN


def test_the_helper_sends_nothing_elsewhere(kb: KeybrakeThread) -> None:
    key = issue(kb, daily_usd_cap=1)
    pm = client(kb.url, key["key"])
    with pytest.raises(KeybrakePostmarkError, match="not Postmark's email API"):
        pm.status.get()
    with pytest.raises(KeybrakePostmarkError, match="account token"):
        pm.domains.all()
    assert key["key"] not in repr(pm) and key["key"] not in str(pm)
    with pytest.raises(TypeError, match="root_api_url"):
        client(kb.url, key["key"], root_api_url="https://api.postmarkapp.com/")


def test_bulk_sends_are_priced_scoped_and_counted_per_address(kb: KeybrakeThread, fake_pm: FakePostmark) -> None:
    key = issue(kb, daily_usd_cap=1, daily_send_cap=4, allowed_to_domains=["example.com"])
    shared = {"From": SENDER, "Subject": "Your receipt", "TextBody": "Thanks!"}
    bulk = {**shared, "Messages": [{"To": "a@example.com", "Cc": "b@example.com"}, {"To": "c@example.com"}]}
    r = raw(kb, key, "/email/bulk", bulk)
    assert r.status_code == 200 and r.json()["Status"] == "Accepted" and fake_pm.bulk == [bulk]
    (row,) = kb.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"]) == ("allowed", pytest.approx(3 * RATE))
    assert row["request_summary"] == {"endpoint": "POST /email/bulk", "items": 3}
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 3
    spy = raw(kb, key, "/email/bulk", {**shared, "Messages": [{"To": "a@example.com", "Bcc": "spy@evil.io"}]})
    assert spy.status_code == 403 and spy.json()["KeybrakeCode"] == "scope_violation" and "evil.io" in spy.text
    over = raw(kb, key, "/email/bulk", {**shared, "Messages": [{"To": "a@example.com, b@example.com"}]})
    assert over.status_code == 429, over.text  # 3 + 2 > daily_send_cap 4
    assert fake_pm.bulk == [bulk] and kb.key(key["id"])["usage"]["daily_sends"]["used"] == 3


def test_unlisted_endpoints_are_refused_on_a_scoped_key_and_server_is_guarded(
    kb: KeybrakeThread, fake_pm: FakePostmark
) -> None:
    for policy in ({"allowed_to_domains": ["example.com"]}, {"daily_send_cap": 5}):
        key = issue(kb, max_usd_per_call=0.05, **policy)
        r = raw(kb, key, "/email/bulkish", {"Messages": [{"To": "spy@evil.io"}]})
        assert r.status_code == 403 and r.json()["KeybrakeCode"] == "scope_violation"
        assert "not described by the Postmark definition" in r.json()["Message"]
    key = issue(kb, daily_usd_cap=1)
    for method in ("POST", "PATCH", "DELETE"):
        body = {"InboundHookUrl": "https://evil.example/hook"} if method != "DELETE" else None
        r = raw(kb, key, "/server", body, method)
        assert r.status_code == 403 and r.json()["KeybrakeCode"] == "endpoint_guarded", method
    assert not fake_pm.requests
