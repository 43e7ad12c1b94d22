"""SMSCo — defined only by docs/vendors.md's worked example file in KEYBRAKE_VENDORS_DIR —
through a real `keybrake serve` process against a fake SMSCo (tests/fakes/smsco_server), with
httpx as the agent (no SDK exists for a fictional API): the price reserved before the call and
settled to the answer, its setting read from the environment, scope and guarded endpoints
refused in SMSCo's error shape before anything is sent, the credential injected as HTTP Basic,
secrets redacted, caps exact under concurrency, a revoke effective on the next request and one
audit row per call."""

from __future__ import annotations

import base64
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.fakes.base import FakeThread
from tests.fakes.smsco_server import ACCOUNT, TOKEN, FakeSmsco
from tests.harness import ADMIN_TOKEN, free_port, spawn_keybrake
from tests.vendors.configured_smsco import MESSAGE, UK, write_smsco
from tests.waits import wait_until

pytestmark = pytest.mark.multiprocess
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Server:
    """A running `keybrake serve` and the admin calls the tests make."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.url, self.proc = f"http://127.0.0.1:{port}", proc

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers=ADMIN, timeout=30, **kw)

    def issue(self, policy: dict[str, Any]) -> dict[str, Any]:
        r = self.admin("POST", "/v1/keys", json={"vendor": "smsco", "label": "test:smsco", "policy": policy})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def send(self, key: str, doc: Any = MESSAGE, path: str = "/v1/messages") -> httpx.Response:
        return httpx.post(f"{self.url}/smsco{path}", json=doc, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def usage(self, key_id: str) -> dict[str, Any]:
        return self.admin("GET", f"/v1/keys/{key_id}").json()["usage"]["daily_usd"]  # type: ignore[no-any-return]

    def audit(self, key_id: str) -> list[dict[str, Any]]:
        r = self.admin("GET", "/v1/audit", params={"key_id": key_id, "limit": 1000})
        assert r.status_code == 200, r.text
        return r.json()["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def _smsco() -> Iterator[FakeThread[FakeSmsco]]:
    with FakeThread(FakeSmsco()) as t:
        yield t


@pytest.fixture
def smsco(_smsco: FakeThread[FakeSmsco]) -> FakeThread[FakeSmsco]:
    """The module's fake SMSCo, emptied for this test (it sees only this test's requests)."""
    fake = _smsco.fake
    fake.requests.clear()
    fake.messages.clear()
    fake.idempotent.clear()
    fake.hang = None
    return _smsco


@pytest.fixture(scope="module")
def _server(tmp_path_factory: pytest.TempPathFactory, _smsco: FakeThread[FakeSmsco]) -> Iterator[Server]:
    """One `keybrake serve` for the module (starting one takes ~1.5 s): each test issues keys of
    its own, and reads usage and audit rows by key."""
    tmp_path = tmp_path_factory.mktemp("serve")
    vendors = tmp_path / "vendor-files"
    write_smsco(vendors)
    port = free_port()
    env = {
        "KEYBRAKE_VENDORS_DIR": str(vendors),
        "KEYBRAKE_SMSCO_USD_PER_SMS": "0.01",  # the definition's price setting, read like any other
        "KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    proc = spawn_keybrake(tmp_path / "data", port, env=env, log_path=tmp_path / "serve.log")
    server = Server(port, proc)
    try:
        r = server.admin(
            "POST",
            "/v1/credentials",
            json={"vendor": "smsco", "name": "smsco", "secret": {"account": ACCOUNT, "token": TOKEN},
                  "base_url": _smsco.base_url},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["secret_hint"] == "token=…9f9f" and TOKEN not in r.text
        outside = {"vendor": "smsco", "name": "elsewhere", "secret": {"account": ACCOUNT, "token": TOKEN},
                   "base_url": "https://api.elsewhere.example"}  # fmt: skip
        refused = server.admin("POST", "/v1/credentials", json=outside)  # not one of the definition's hosts
        assert refused.status_code == 422 and "base_url" in refused.text, refused.text
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    log = (tmp_path / "serve.log").read_text()
    assert TOKEN not in log  # the secret is never logged
    assert '"vendor defined by a file"' in log and str(vendors / "smsco.toml") in log


@pytest.fixture
def kb(_server: Server, smsco: FakeThread[FakeSmsco]) -> Server:
    return _server


def test_a_message_reserves_its_recipients_then_settles_to_smscos_price(
    kb: Server, smsco: FakeThread[FakeSmsco]
) -> None:
    key = kb.issue({"daily_usd_cap": 1, "allowed_smsco_prefixes": ["+1"], "daily_send_cap": 10})
    held = smsco.hold()
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(kb.send(key["key"])))
    thread.start()
    try:
        wait_until(lambda: bool(smsco.fake.requests), "the message reached SMSCo")
        usage = kb.usage(key["id"])
        assert (usage["reserved"], usage["used"]) == (0.02, 0)  # two recipients at KEYBRAKE_SMSCO_USD_PER_SMS
    finally:
        held.set()
        thread.join(30)
    (answer,) = answers
    assert answer.status_code == 201, answer.text
    (seen,) = smsco.fake.requests
    assert (seen.username, seen.password) == (ACCOUNT, TOKEN)  # the credential, as HTTP Basic
    assert key["key"] not in str(seen.headers)
    usage = kb.usage(key["id"])
    assert (usage["reserved"], usage["used"]) == (0, 0.015)  # SMSCo's own price: 2 × $0.0075
    (row,) = kb.audit(key["id"])
    assert (row["verdict"], row["cost_usd"], row["cost_source"], row["vendor"]) == (
        "allowed",
        0.015,
        "response",
        "smsco",
    )
    assert row["vendor_request_id"] == answer.headers["x-request-id"]
    assert row["request_summary"] == {"endpoint": "POST /v1/messages", "items": 2}


def test_scope_guarded_endpoints_and_the_send_cap_refuse_in_smscos_shape_before_sending(
    kb: Server, smsco: FakeThread[FakeSmsco]
) -> None:
    key = kb.issue({"daily_usd_cap": 1, "allowed_smsco_prefixes": ["+1"]})
    for doc in (UK, {**MESSAGE, "to": []}):  # outside the prefixes, or naming no number
        refused = kb.send(key["key"], doc)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["status"]) == ("scope_violation", 403)
        assert "allowed_smsco_prefixes" in error["message"] or "names no" in error["message"]
    keys = httpx.get(f"{kb.url}/smsco/v1/keys", headers={"Authorization": f"Bearer {key['key']}"})
    assert (keys.status_code, keys.json()["error"]["code"]) == (403, "endpoint_guarded")
    assert smsco.fake.requests == []  # nothing was sent
    named = kb.issue({"daily_usd_cap": 1, "allowed_endpoints": ["GET /v1/keys", "POST /v1/messages"]})
    keys = httpx.get(f"{kb.url}/smsco/v1/keys", headers={"Authorization": f"Bearer {named['key']}"})
    assert keys.status_code == 200, keys.text
    assert "s3cret" not in keys.text and keys.json()["keys"][0]["secret"] == "[redacted by keybrake]"
    verdicts = [r["verdict"] for r in kb.audit(key["id"])]  # newest first
    assert verdicts == ["denied_endpoint_guarded", "denied_scope_violation", "denied_scope_violation"]
    sends = kb.issue({"daily_usd_cap": 1, "daily_send_cap": 3})  # `sends = "items"`: one per recipient
    assert kb.send(sends["key"]).status_code == 201
    over = kb.send(sends["key"])
    assert (over.status_code, over.json()["error"]["code"]) == (429, "send_cap_exceeded")
    assert len(smsco.fake.requests) == 2  # the GET /v1/keys and the first message
    unlisted = httpx.delete(f"{kb.url}/smsco/v1/messages/msg_1", headers={"Authorization": f"Bearer {sends['key']}"})
    # an endpoint the file does not list: its sends cannot be counted, so a send-capped key is refused
    assert (unlisted.status_code, unlisted.json()["error"]["code"]) == (403, "scope_violation")
    plain = kb.issue({"daily_usd_cap": 1})  # without scope fields or a send cap it is unpriceable: refused too
    unpriced = httpx.delete(f"{kb.url}/smsco/v1/messages/msg_1", headers={"Authorization": f"Bearer {plain['key']}"})
    assert (unpriced.status_code, unpriced.json()["error"]["code"]) == (403, "unpriceable_request")
    assert len(smsco.fake.requests) == 2  # nothing of either reached SMSCo


def test_caps_hold_exactly_under_concurrency_and_a_revoke_stops_the_next_request(
    kb: Server, smsco: FakeThread[FakeSmsco]
) -> None:
    key = kb.issue({"daily_usd_cap": 0.1})  # ten one-recipient messages at $0.01 reserved
    one = {**MESSAGE, "to": ["+14155550100"]}
    held = smsco.hold()
    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(kb.send, key["key"], one) for _ in range(24)]
        wait_until(lambda: sum(f.done() for f in futures) == 14, "fourteen refusals while ten are in flight")
        assert len(smsco.fake.requests) == 10
        held.set()
        answers = [f.result() for f in futures]
    assert sorted(a.status_code for a in answers) == [201] * 10 + [429] * 14
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"spend_cap_exceeded"}
    rows = kb.audit(key["id"])
    assert len(rows) == 24 and sum(r["verdict"] == "allowed" for r in rows) == 10
    usage = kb.usage(key["id"])
    assert (usage["reserved"], usage["used"]) == (0, 0.075)  # settled to SMSCo's $0.0075 each

    second = kb.issue({"daily_usd_cap": 1})
    assert kb.send(second["key"], one).status_code == 201
    assert kb.admin("DELETE", f"/v1/keys/{second['id']}").status_code == 200
    refused = kb.send(second["key"], one)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "key_revoked")
    assert len(smsco.fake.requests) == 11  # the revoked key's request never left


def test_a_form_message_is_read_like_its_json_twin(kb: Server, smsco: FakeThread[FakeSmsco]) -> None:
    key = kb.issue({"daily_usd_cap": 1, "allowed_smsco_prefixes": ["+1"]})
    auth = {"Authorization": "Basic " + base64.b64encode(f"x:{key['key']}".encode()).decode()}
    body = "from=%2B14155550199&to=%2B14155550100&to=%2B14155550101&text=hi"
    form = {"content-type": "application/x-www-form-urlencoded", **auth}
    r = httpx.post(f"{kb.url}/smsco/v1/messages", content=body, headers=form, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["to"] == ["+14155550100", "+14155550101"]
    twice = httpx.post(f"{kb.url}/smsco/v1/messages", content=body + "&from=%2B1999", headers=form, timeout=30)
    assert (twice.status_code, twice.json()["error"]["code"]) == (400, "param_ambiguous")
    assert [row["cost_usd"] for row in kb.audit(key["id"])] == [0, 0.015]  # newest first


def test_a_retry_with_the_definitions_idempotency_header_is_charged_once(
    kb: Server, smsco: FakeThread[FakeSmsco]
) -> None:
    key = kb.issue({"daily_usd_cap": 1})
    headers = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "retry-1"}
    first, second = (
        httpx.post(f"{kb.url}/smsco/v1/messages", json=MESSAGE, headers=headers, timeout=30) for _ in range(2)
    )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert first.json()["id"] == second.json()["id"]
    assert all(r.headers.get("idempotency-key") == "retry-1" for r in smsco.fake.requests)  # forwarded
    assert len(smsco.fake.messages) == 1
    assert kb.usage(key["id"])["used"] == 0.015  # the retry moved no money
    assert len(kb.audit(key["id"])) == 2  # one row per call, the retry included
