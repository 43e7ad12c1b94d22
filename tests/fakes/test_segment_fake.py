"""The fake Segment against the official segment-analytics-python library, so the fake answers what
the library expects, and its limits as Segment documents them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.fakes.segment_server import (
    DEFAULT_WRITE_KEY,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    FakeSegment,
    FakeSegmentThread,
)
from tests.waits import wait_until

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{DEFAULT_WRITE_KEY}:".encode()).decode()}


@pytest.fixture
def server() -> Iterator[FakeSegmentThread]:
    with FakeSegmentThread() as t:
        yield t


@pytest.fixture
def fake(server: FakeSegmentThread) -> FakeSegment:
    return server.fake


def client(fake: FakeSegment, **options: Any) -> Client:
    return Client(DEFAULT_WRITE_KEY, host=fake.base_url, **options)


def test_the_library_posts_batches_with_the_write_key_as_basic_user_and_in_the_body(fake: FakeSegment) -> None:
    c = client(fake, sync_mode=True)
    c.track("u1", "Order Completed", {"revenue": 12.5})
    c.identify("u1", {"plan": "pro"})
    c.alias("anon-7", "u1")
    assert [(r.method, r.path) for r in fake.requests] == [("POST", "/v1/batch")] * 3
    first = fake.requests[0]
    assert (first.username, first.password) == (DEFAULT_WRITE_KEY, "")
    assert first.json["writeKey"] == DEFAULT_WRITE_KEY and "sentAt" in first.json
    assert [(e["type"], e.get("event")) for e in fake.events] == [
        ("track", "Order Completed"),
        ("identify", None),
        ("alias", None),
    ]
    assert fake.events[0]["properties"] == {"revenue": 12.5} and not fake.dropped


def test_the_background_consumer_sends_queued_messages_in_batches_gzip_too(fake: FakeSegment) -> None:
    for gz in (False, True):
        c = client(fake, gzip=gz, upload_interval=0.05)
        for i in range(30):
            c.track(f"u{i}", "Viewed", {"gz": gz})
        c.flush()
        c.join()
    assert len(fake.events) == 60 and not fake.dropped
    assert {r.headers.get("content-encoding") for r in fake.requests} == {None, "gzip"}
    assert all(r.path == "/v1/batch" for r in fake.requests)


def test_single_endpoints_take_one_message_typed_by_the_path(fake: FakeSegment) -> None:
    for path, doc in [
        ("/v1/track", {"userId": "u1", "event": "Signed Up"}),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}),
        ("/v1/screen", {"userId": "u1", "name": "Cart"}),
        ("/v1/group", {"userId": "u1", "groupId": "g1"}),
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("/v1/alias", {"previousId": "a1", "userId": "u1"}),
    ]:
        r = httpx.post(fake.base_url + path, json=doc, headers=BASIC)
        assert (r.status_code, r.json()) == (200, {"success": True})
    assert [e["type"] for e in fake.events] == ["track", "page", "screen", "group", "identify", "alias"]


def test_messages_segment_does_not_accept_are_answered_200_and_dropped(fake: FakeSegment) -> None:
    url = fake.base_url + "/v1/batch"
    batch = [
        {"type": "track", "event": "x"},  # no identity
        {"type": "track", "userId": "u1"},  # no event
        {"type": "group", "userId": "u1"},  # no groupId
        {"type": "alias", "userId": "u1"},  # no previousId
        {"type": "launch", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "ok", "messageId": "m1"},
        {"type": "track", "userId": "u1", "event": "again", "messageId": "m1"},
    ]
    assert httpx.post(url, json={"batch": batch}, headers=BASIC).status_code == 200
    assert [e["event"] for e in fake.events] == ["ok"]
    assert [reason for reason, _ in fake.dropped] == [
        "no userId or anonymousId",
        "track without event",
        "group without groupId",
        "alias needs previousId and userId",
        "unknown type 'launch'",
        "duplicate messageId",
    ]


def test_the_write_key_may_come_in_the_body_and_an_unknown_one_drops_the_messages(fake: FakeSegment) -> None:
    url = fake.base_url + "/v1/track"
    doc = {"userId": "u1", "event": "A"}
    assert httpx.post(url, json={**doc, "writeKey": DEFAULT_WRITE_KEY}).status_code == 200
    assert httpx.post(url, json={**doc, "writeKey": "someone-elses"}).status_code == 200
    assert httpx.post(url, json=doc).status_code == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}
    assert httpx.post(url, json={**doc, "writeKey": DEFAULT_WRITE_KEY}, headers=wrong).status_code == 200
    assert len(fake.events) == 1
    assert [reason for reason, _ in fake.dropped] == ["write key unknown"] * 3


def test_payload_limits_and_json_errors_are_400_with_code_and_message(fake: FakeSegment) -> None:
    def post(path: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
        return httpx.post(fake.base_url + path, content=content, headers={**BASIC, "content-type": content_type})

    def body(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    msg = {"type": "track", "userId": "u1", "event": "A"}
    pad = MAX_MESSAGE_BYTES - len(body({**msg, "properties": {"p": ""}}))
    exact = body({**msg, "properties": {"p": "x" * pad}})
    assert len(exact) == MAX_MESSAGE_BYTES and post("/v1/track", exact).status_code == 200
    too_big = post("/v1/track", body({**msg, "properties": {"p": "x" * (pad + 1)}}))
    assert too_big.status_code == 400 and too_big.json()["code"] == "invalid_request"
    assert str(MAX_MESSAGE_BYTES) in too_big.json()["message"]
    big_message = post("/v1/batch", body({"batch": [{**msg, "properties": {"p": "x" * MAX_MESSAGE_BYTES}}]}))
    assert big_message.status_code == 400
    many = post("/v1/batch", body({"batch": [msg] * (MAX_BATCH_MESSAGES + 1)}))
    assert many.status_code == 400 and str(MAX_BATCH_MESSAGES) in many.json()["message"]
    big_batch = body({"batch": [{**msg, "properties": {"p": "x" * 30_000}}] * 18})
    assert len(big_batch) > MAX_BATCH_BYTES and post("/v1/batch", big_batch).status_code == 400
    assert post("/v1/batch", body({"batch": [msg] * 15})).status_code == 200
    assert post("/v1/track", b"{not json").status_code == 400
    assert post("/v1/track", body([msg])).status_code == 400
    assert post("/v1/track", b"userId=u1", "application/x-www-form-urlencoded").status_code == 400
    assert post("/v1/batch", body({"batch": {"0": msg}})).status_code == 400
    assert post("/v1/replay", body(msg)).status_code == 404
    assert httpx.get(fake.base_url + "/v1/track", headers=BASIC).status_code == 405
    assert len(fake.events) == 16


def test_the_library_raises_api_error_with_segments_code_and_message(fake: FakeSegment) -> None:
    c = client(fake, sync_mode=True)
    fake.fail_next(400, "too large", "invalid_request")
    with pytest.raises(APIError) as exc:
        c.track("u1", "A")
    assert (exc.value.status, exc.value.code, exc.value.message) == (400, "invalid_request", "too large")
    assert not fake.events


@pytest.mark.parametrize(("status", "retried"), [(500, True), (429, True), (400, False), (403, False)])
def test_which_answers_the_background_consumer_retries(fake: FakeSegment, status: int, retried: bool) -> None:
    errors: list[Any] = []
    c = client(fake, upload_interval=0.05, on_error=lambda e, batch: errors.append(e))
    fake.fail_next(status)
    c.track("u1", "A")
    c.flush()
    c.join()
    if retried:
        assert len(fake.requests) == 2 and fake.requests[1].headers["x-retry-count"] == "1"
        assert len(fake.events) == 1 and not errors
    else:
        wait_until(lambda: bool(errors), what="the library reports the refused batch")
        assert len(fake.requests) == 1 and not fake.events and errors[0].status == status
