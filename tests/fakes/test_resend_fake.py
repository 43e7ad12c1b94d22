"""The fake Resend against the official resend-python SDK, so the fake answers what the SDK expects."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import httpx
import pytest
import resend
from resend.exceptions import (
    InvalidApiKeyError,
    MissingApiKeyError,
    MissingRequiredFieldsError,
    RateLimitError,
    ResendError,
    ValidationError,
)

from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend, FakeResendThread
from tests.harness import wait_for

SENDER = "Acme <bot@mail.acme.io>"


@pytest.fixture
def server() -> Iterator[FakeResendThread]:
    """A fake Resend with resend-python's module settings pointed at it, restored afterwards."""
    saved = resend.api_key, resend.api_url
    with FakeResendThread() as t:
        resend.api_key, resend.api_url = DEFAULT_API_KEY, t.base_url
        try:
            yield t
        finally:
            resend.api_key, resend.api_url = saved


@pytest.fixture
def fake(server: FakeResendThread) -> FakeResend:
    return server.fake


def email(to: Any = "a@example.com", **extra: Any) -> Any:
    return {"from": SENDER, "to": to, "subject": "Your receipt", "html": "<p>Thanks!</p>", **extra}


def test_send_returns_an_id_and_records_what_the_sdk_sent(fake: FakeResend) -> None:
    payload = email(["a@example.com", "Bee <b@example.com>"], cc="c@example.com", tags=[{"name": "kind", "value": "r"}])
    sent = resend.Emails.send(payload)
    uuid.UUID(sent["id"])
    (rec,) = fake.requests
    assert (rec.method, rec.path, rec.json) == ("POST", "/emails", payload)
    assert rec.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert rec.headers["user-agent"] == f"resend-python:{resend.__version__}"
    assert rec.headers["content-type"] == "application/json" and "idempotency-key" not in rec.headers
    assert fake.emails[sent["id"]]["tags"] == [{"name": "kind", "value": "r"}]

    got: dict[str, Any] = dict(resend.Emails.get(sent["id"]))  # the SDK's Email type omits "object"
    assert got["object"] == "email" and got["id"] == sent["id"]
    assert (got["to"], got["cc"], got["bcc"], got["from"]) == (
        ["a@example.com", "Bee <b@example.com>"],
        ["c@example.com"],
        None,
        SENDER,
    )
    assert got["last_event"] == "sent" and "tags" not in got


def test_a_batch_of_three_returns_three_ids(fake: FakeResend) -> None:
    out = resend.Batch.send([email(f"u{i}@example.com") for i in range(3)])
    ids = [d["id"] for d in out["data"]]
    assert len(set(ids)) == 3 and set(ids) == set(fake.emails) and "errors" not in out
    assert isinstance(fake.requests[-1].json, list) and len(fake.requests[-1].json) == 3


def test_a_batch_is_all_or_nothing_unless_permissive(fake: FakeResend) -> None:
    with pytest.raises(MissingRequiredFieldsError):
        resend.Batch.send([email(), {"from": SENDER, "subject": "x"}, email()])  # type: ignore[typeddict-item]
    with pytest.raises(ValidationError) as too_many:
        resend.Batch.send([email()] * 101)
    assert too_many.value.code == 422 and not fake.emails
    out = resend.Batch.send([email(), email("not-an-address"), email()], {"batch_validation": "permissive"})
    assert len(out["data"]) == 2 == len(fake.emails)
    assert [e["index"] for e in out["errors"]] == [1] and "`to`" in out["errors"][0]["message"]


def test_a_wrong_or_missing_key_is_refused_as_resend_does(fake: FakeResend) -> None:
    resend.api_key = "re_" + "x" * 32
    with pytest.raises(InvalidApiKeyError) as wrong:
        resend.Emails.send(email())
    assert (wrong.value.code, wrong.value.error_type, wrong.value.message) == (
        403,
        "invalid_api_key",
        "API key is invalid.",
    )
    resend.api_key = ""
    with pytest.raises(MissingApiKeyError) as missing:
        resend.Emails.send(email())
    assert (missing.value.code, missing.value.error_type) == (401, "missing_api_key")
    assert not fake.emails and len(fake.requests) == 2  # recorded before auth


def test_a_missing_to_is_a_missing_required_field(fake: FakeResend) -> None:
    with pytest.raises(MissingRequiredFieldsError) as exc:
        resend.Emails.send({"from": SENDER, "subject": "x", "html": "y"})  # type: ignore[typeddict-item]
    assert (exc.value.code, exc.value.error_type, exc.value.message) == (
        422,
        "missing_required_field",
        "Missing `to` field.",
    )
    with pytest.raises(ValidationError) as bad:
        resend.Emails.send(email("a@example.com, b@example.com"))
    assert bad.value.code == 422 and "Invalid `to` field" in bad.value.message
    assert not fake.emails


def test_an_idempotent_repeat_replays_the_first_answer(fake: FakeResend) -> None:
    opts: Any = {"idempotency_key": "order-77-receipt"}
    one = resend.Emails.send(email(), opts)
    two = resend.Emails.send(email(), opts)
    assert one["id"] == two["id"] and list(fake.emails) == [one["id"]]
    assert [r.headers["idempotency-key"] for r in fake.requests] == ["order-77-receipt"] * 2
    with pytest.raises(ResendError) as other_body:
        resend.Emails.send(email("z@example.com"), opts)
    assert type(other_body.value) is ResendError  # resend-python maps no 409 to a subclass
    assert (other_body.value.code, other_body.value.error_type) == (409, "invalid_idempotent_request")
    batch = resend.Batch.send([email()], {"idempotency_key": "batch-1"})
    assert resend.Batch.send([email()], {"idempotency_key": "batch-1"})["data"] == batch["data"]
    assert len(fake.emails) == 2


def test_the_same_key_while_the_first_is_in_flight_is_concurrent(server: FakeResendThread) -> None:
    opts: Any = {"idempotency_key": "k-1"}
    server.hold()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(resend.Emails.send, email(), opts)
        wait_for(lambda: len(server.fake.requests) == 1)
        second = pool.submit(resend.Emails.send, email(), opts)
        wait_for(lambda: len(server.fake.requests) == 2)
        server.release()
        assert first.result(5)["id"] in server.fake.emails
        with pytest.raises(ResendError) as exc:
            second.result(5)
    assert (exc.value.code, exc.value.error_type) == (409, "concurrent_idempotent_requests")
    assert len(server.fake.emails) == 1


def test_forced_answers_and_names_the_sdk_does_not_know(fake: FakeResend) -> None:
    fake.fail_next(429)
    with pytest.raises(RateLimitError) as limited:
        resend.Emails.send(email())
    assert limited.value.error_type == "rate_limit_exceeded" and limited.value.headers["retry-after"] == "1"
    fake.fail_next(500)
    with pytest.raises(ResendError) as down:
        resend.Emails.send(email())
    assert (type(down.value), down.value.code, down.value.error_type) == (ResendError, 500, "internal_server_error")
    fake.fail_next(429, "spend_cap_exceeded", "Daily cap of $5 reached.")
    with pytest.raises(ResendError) as unknown:
        resend.Emails.send(email())
    e = unknown.value
    assert (type(e), e.code, e.error_type, e.message, e.suggested_action) == (
        ResendError,
        429,
        "spend_cap_exceeded",
        "Daily cap of $5 reached.",
        "",
    )
    assert not fake.emails and len(fake.requests) == 3
    fake.delay_seconds = 0.2
    started = time.monotonic()
    resend.Emails.send(email())
    assert time.monotonic() - started >= 0.2


def test_api_keys_carry_a_token_that_works_and_lists_without_it(fake: FakeResend) -> None:
    created = resend.ApiKeys.create({"name": "ci"})
    assert created["token"].startswith("re_") and created["id"] in fake.api_keys
    listed = resend.ApiKeys.list()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [k["id"] for k in listed["data"]] == [created["id"]] and "token" not in listed["data"][0]
    resend.api_key = created["token"]
    assert resend.Emails.send(email())["id"] in fake.emails
    resend.api_key = resend.ApiKeys.create({"name": "mailer", "permission": "sending_access"})["token"]
    resend.Emails.send(email())
    with pytest.raises(ResendError) as restricted:
        resend.ApiKeys.list()
    assert (restricted.value.code, restricted.value.error_type) == (401, "restricted_api_key")


def test_bodies_paths_and_methods_resend_would_refuse(fake: FakeResend) -> None:
    auth = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    url = fake.base_url
    cases = [
        (httpx.post(f"{url}/emails", content=b"to=a", headers={**auth, "content-type": "application/json"}), 400),
        (httpx.post(f"{url}/emails", data={"to": "a@example.com"}, headers=auth), 400),
        (httpx.post(f"{url}/emails", json=email(), headers={**auth, "Idempotency-Key": "k" * 257}), 400),
        (httpx.get(f"{url}/nope", headers=auth), 404),
        (httpx.get(f"{url}/domains", headers=auth), 404),
        (httpx.delete(f"{url}/emails", headers=auth), 405),
        (httpx.get(f"{url}/emails/not-a-uuid", headers=auth), 422),
        (httpx.get(f"{url}/emails/{uuid.uuid4()}", headers=auth), 404),
        (httpx.get(f"{url}/nope"), 401),
    ]
    names = [r.json()["name"] for r, _ in cases]
    assert names == [
        "validation_error",
        "validation_error",
        "invalid_idempotency_key",
        "not_found",
        "not_found",
        "method_not_allowed",
        "invalid_parameter",
        "not_found",
        "missing_api_key",
    ]
    for r, status in cases:
        assert r.status_code == status == r.json()["statusCode"] and r.json()["message"]
    assert fake.requests[0].body == b"to=a" and fake.requests[0].json is None
    assert not fake.emails


async def test_runs_in_the_test_loop_too() -> None:
    async with FakeResend() as fake, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
        async with session.post(f"{fake.base_url}/emails", json=email(), headers=headers) as r:
            assert r.status == 200 and (await r.json())["id"] in fake.emails
