"""segment-analytics-python through a running Keybrake against a fake Segment Tracking API.

The library takes a `host`: pointed at `{proxy}/segment`, with the vault key as its write key, it
needs no helper. It sends the write key twice (Basic user and the body's `writeKey`); Segment
receives neither copy of the vault key, only the real write key as the Basic user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.fakes.segment_server import DEFAULT_WRITE_KEY, FakeSegment, FakeSegmentThread
from tests.harness import KeybrakeThread
from tests.waits import wait_until

USD_PER_EVENT = Decimal("0.001")


@pytest.fixture
def fake_segment() -> Iterator[FakeSegment]:
    with FakeSegmentThread() as t:
        yield t.fake


@pytest.fixture
def kbr(tmp_path: Path, fake_segment: FakeSegment) -> Iterator[KeybrakeThread]:
    prices = {"segment": {"keybrake_segment_usd_per_event": USD_PER_EVENT}}
    # Generous store deadlines: the concurrency tests check that caps are exact, and a loaded
    # test machine must not turn their reservations into 503 enforcement_unavailable.
    with KeybrakeThread(
        tmp_path / "data", vendor_settings=prices, reserve_deadline_ms=20_000, pg_pool_timeout_s=20.0
    ) as server:
        server.add_credential(fake_segment.base_url, name="segment", secret=DEFAULT_WRITE_KEY, vendor="segment")
        yield server


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    return kb.issue({"daily_usd_cap": 1, **policy}, vendor="segment", label="test:tracker:run-1")


def client(kb: KeybrakeThread, key: dict[str, Any], **options: Any) -> Client:
    """The library as an agent configures it: the vault key as write key, Keybrake as host."""
    return Client(key["key"], host=f"{kb.url}/segment", **options)


def posts(fake: FakeSegment) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


def kinds(fake: FakeSegment) -> list[tuple[str, str | None]]:
    """(type, event) of every message Segment accepted."""
    return [(e["type"], e.get("event")) for e in fake.events]


def basic(key: dict[str, Any]) -> tuple[str, str]:
    return (key["key"], "")


def test_track_and_identify_swap_the_write_key_and_cost_the_rate_per_event(
    kbr: KeybrakeThread, fake_segment: FakeSegment
) -> None:
    key = issue(kbr, daily_send_cap=100)
    sdk = client(kbr, key, sync_mode=True)
    sdk.track("u1", "Order Completed", {"revenue": 12.5})
    sdk.identify("u1", {"plan": "pro"})
    assert [(e["type"], e.get("event")) for e in fake_segment.events] == [
        ("track", "Order Completed"),
        ("identify", None),
    ]
    for seen in posts(fake_segment):
        assert (seen.path, seen.username, seen.password) == ("/v1/batch", DEFAULT_WRITE_KEY, "")
        assert "writeKey" not in seen.json  # the library's body copy of the vault key is removed
        assert key["key"] not in json.dumps([seen.headers, seen.body.decode()])
    rows = kbr.audit(key_id=key["id"])
    assert [(r["verdict"], r["cost_usd"]) for r in rows] == [("allowed", 0.001)] * 2
    assert rows[0]["request_summary"] == {"endpoint": "POST /v1/batch", "items": 1}
    assert "Order Completed" not in json.dumps(rows) and rows[0]["body_hash"]
    assert key["key"] not in kbr.logs.text() and DEFAULT_WRITE_KEY not in kbr.logs.text()
    usage = kbr.key(key["id"])["usage"]
    assert usage["daily_sends"]["used"] == 2 and usage["daily_usd"]["used"] == 0.002


def test_the_background_consumer_batches_and_each_batch_counts_its_events(
    kbr: KeybrakeThread, fake_segment: FakeSegment
) -> None:
    key = issue(kbr, daily_send_cap=1000)
    sdk = client(kbr, key, upload_interval=0.05, upload_size=10)
    for i in range(35):
        sdk.track(f"u{i}", "Viewed Product", {"i": i})
    sdk.flush()
    sdk.join()
    assert len(fake_segment.events) == 35
    sent = posts(fake_segment)
    assert len(sent) >= 4 and all(len(r.json["batch"]) <= 10 for r in sent)
    rows = kbr.audit(key_id=key["id"])
    assert len(rows) == len(sent)  # one audit row per call
    assert sorted(r["cost_usd"] for r in rows) == sorted(float(USD_PER_EVENT * len(r.json["batch"])) for r in sent)
    assert kbr.key(key["id"])["usage"]["daily_sends"]["used"] == 35


def test_the_send_cap_is_exact_under_concurrent_batches(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, daily_send_cap=50)
    sizes = [1, 2, 3, 4] * 12  # 120 events offered in 48 batches, 16 at a time

    def send(i: int) -> str:
        size = sizes[i]
        r = httpx.post(
            f"{kbr.url}/segment/v1/batch",
            json={"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for _ in range(size)]},
            auth=basic(key),
            timeout=30,
        )
        return "ok" if r.status_code == 200 else r.json()["code"]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(send, range(len(sizes))))
    accepted = sum(size for size, o in zip(sizes, outcomes, strict=True) if o == "ok")
    assert set(outcomes) <= {"ok", "send_cap_exceeded"} and "send_cap_exceeded" in outcomes
    assert len(fake_segment.events) == accepted and 47 <= accepted <= 50  # a 4-event batch may not fit
    sends = kbr.key(key["id"])["usage"]["daily_sends"]
    assert (sends["limit"], sends["used"] + sends["reserved"]) == (50, accepted)
    rows = kbr.audit(key_id=key["id"])
    assert len(rows) == len(sizes)
    assert sum(r["verdict"] == "cap_exceeded" for r in rows) == outcomes.count("send_cap_exceeded")


def test_the_usd_cap_is_exact_under_concurrent_library_calls(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, daily_usd_cap=0.02)  # 20 events at $0.001
    sdk = client(kbr, key, sync_mode=True, timeout=30)

    def send(i: int) -> str:
        try:
            sdk.track(f"u{i}", "E")
            return "ok"
        except APIError as exc:
            return str(exc.code)

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(send, range(40)))
    assert outcomes.count("ok") == 20 and outcomes.count("spend_cap_exceeded") == 20, outcomes
    assert len(fake_segment.events) == 20
    assert kbr.key(key["id"])["usage"]["daily_usd"]["used"] == 0.02
    verdicts = [r["verdict"] for r in kbr.audit(key_id=key["id"])]
    assert verdicts.count("allowed") == 20 and verdicts.count("cap_exceeded") == 20


def test_a_revoked_key_is_refused_on_the_next_request(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr)
    sdk = client(kbr, key, sync_mode=True)
    sdk.track("u1", "A")
    with kbr.admin() as admin:
        assert admin.delete(f"/v1/keys/{key['id']}", params={"reason": "run finished"}).status_code == 200
    with pytest.raises(APIError) as exc:
        sdk.track("u1", "B")
    assert (exc.value.status, exc.value.code) == (401, "key_revoked") and "run finished" in exc.value.message
    assert [e["event"] for e in fake_segment.events] == ["A"]
    assert [r["verdict"] for r in kbr.audit(key_id=key["id"])] == ["denied_key_revoked", "allowed"]


def test_allowed_events_and_types_refuse_a_whole_batch(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, allowed_events=["Order Completed"], allowed_types=["track", "identify"])
    sdk = client(kbr, key, sync_mode=True)
    sdk.track("u1", "Order Completed")
    sdk.identify("u1", {"plan": "pro"})  # no `event`: not limited by allowed_events
    with pytest.raises(APIError) as exc:
        sdk.track("u1", "Refund Issued")
    assert (exc.value.status, exc.value.code) == (403, "scope_violation") and "Refund Issued" in exc.value.message
    with pytest.raises(APIError) as exc:
        sdk.alias("anon-1", "u1")
    assert exc.value.code == "scope_violation" and "alias" in exc.value.message
    batch = [{"type": "track", "userId": "u1", "event": e} for e in ("Order Completed", "order completed")]
    r = httpx.post(f"{kbr.url}/segment/v1/batch", json={"batch": batch}, auth=basic(key))
    assert r.status_code == 403 and r.json()["code"] == "scope_violation"  # exact: case matters
    assert [(e["type"], e.get("event")) for e in fake_segment.events] == [
        ("track", "Order Completed"),
        ("identify", None),
    ]


def test_a_write_key_in_the_body_is_never_forwarded_and_must_be_the_vault_key(
    kbr: KeybrakeThread, fake_segment: FakeSegment
) -> None:
    key = issue(kbr)
    url = f"{kbr.url}/segment/v1/track"
    doc = {"userId": "u1", "event": "A"}
    assert httpx.post(url, json={**doc, "writeKey": key["key"]}, auth=basic(key)).status_code == 200
    for other in (DEFAULT_WRITE_KEY, "someone-elses-key", 7):
        r = httpx.post(url, json={**doc, "writeKey": other}, auth=basic(key))
        assert r.status_code in (400, 401) and r.json()["code"] in ("key_ambiguous", "key_invalid"), r.text
    assert httpx.post(url, json={**doc, "WRITEKEY": DEFAULT_WRITE_KEY}, auth=basic(key)).status_code == 400
    alone = httpx.post(url, json={**doc, "writeKey": key["key"]})  # Segment's body-only auth
    assert alone.status_code == 401 and alone.json()["code"] == "key_missing"
    assert httpx.post(url, json={**doc, "WriteKey": key["key"]}, auth=basic(key)).status_code == 200  # read as writeKey
    near_miss = httpx.post(url, json={**doc, "writeKey ": key["key"]}, auth=basic(key))
    assert near_miss.status_code == 400 and near_miss.json()["code"] == "body_invalid"
    assert [r.json for r in posts(fake_segment)] == [doc, doc]  # both without the member
    assert all(key["key"] not in r.body.decode() for r in posts(fake_segment))


def test_what_the_background_consumer_does_with_refusals(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    """A cap refusal (429 with Retry-After: the seconds to the cap's reset) is a rate limit to the
    library: with `max_rate_limit_duration` shorter than the wait it drops the batch at once and
    tells `on_error`; a refusal it does not retry (415 here) reaches `on_error` as an APIError."""
    key = issue(kbr, daily_send_cap=1)
    errors: list[Any] = []
    options: dict[str, Any] = {"upload_interval": 0.05, "on_error": lambda e, batch: errors.append(e)}
    sdk = client(kbr, key, max_rate_limit_duration=60, **options)
    sdk.track("u1", "A")
    sdk.flush()
    sdk.track("u1", "B")
    sdk.flush()
    wait_until(lambda: bool(errors), what="the library reports the dropped batch")
    assert "Rate limit duration exceeded" in str(errors[0])
    assert [e["event"] for e in fake_segment.events] == ["A"]
    assert sorted(r["verdict"] for r in kbr.audit(key_id=key["id"])) == ["allowed", "cap_exceeded"]
    gz = client(kbr, key, gzip=True, **options)
    gz.track("u1", "C")
    gz.flush()
    assert (errors[-1].status, errors[-1].code) == (415, "unsupported_media_type")
    sdk.join()
    gz.join()


def test_a_cap_that_never_resets_is_retried_max_retries_times(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, total_usd_cap=0.001)  # one event at $0.001
    errors: list[Any] = []
    sdk = client(kbr, key, upload_interval=0.05, max_retries=1, on_error=lambda e, batch: errors.append(e))
    sdk.track("u1", "A")
    sdk.flush()
    sdk.track("u1", "B")
    sdk.flush()
    sdk.join()
    (error,) = errors
    assert (error.status, error.code) == (429, "spend_cap_exceeded") and "retry-after" not in error.response.headers
    assert [e["event"] for e in fake_segment.events] == ["A"]
    assert sorted(r["verdict"] for r in kbr.audit(key_id=key["id"])) == ["allowed", "cap_exceeded", "cap_exceeded"]


def test_sync_mode_raises_the_cap_refusal_at_once(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, daily_send_cap=2)
    sdk = client(kbr, key, sync_mode=True)
    sdk.track("u1", "A")
    sdk.track("u1", "B")
    with pytest.raises(APIError) as exc:
        sdk.track("u1", "C")
    assert (exc.value.status, exc.value.code) == (429, "send_cap_exceeded")
    assert "Do not retry" in exc.value.message and int(exc.value.response.headers["retry-after"]) > 0
    assert [e["event"] for e in fake_segment.events] == ["A", "B"]


def test_oversized_bodies_are_refused_before_sending(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr)
    big = {"batch": [{"type": "track", "userId": "u1", "event": "E", "properties": {"p": "x" * 30_000}}] * 18}
    r = httpx.post(f"{kbr.url}/segment/v1/batch", json=big, auth=basic(key))
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    form = httpx.post(f"{kbr.url}/segment/v1/track", data={"userId": "u1", "event": "E"}, auth=basic(key))
    assert form.status_code == 415 and form.json()["code"] == "unsupported_media_type"
    assert not posts(fake_segment)


def test_segments_own_refusal_is_passed_through_and_counts_nothing(
    kbr: KeybrakeThread, fake_segment: FakeSegment
) -> None:
    key = issue(kbr, daily_send_cap=10)
    big = {"userId": "u1", "event": "E", "properties": {"p": "x" * 40_000}}  # over Segment's 32 KB per event
    r = httpx.post(f"{kbr.url}/segment/v1/track", json=big, auth=basic(key))
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"  # Segment's answer, not Keybrake's
    assert "32768" in r.json()["message"] and len(posts(fake_segment)) == 1 and not fake_segment.events
    (row,) = kbr.audit(key_id=key["id"])
    assert row["cost_usd"] == 0
    sends = kbr.key(key["id"])["usage"]["daily_sends"]
    assert (sends["used"], sends["reserved"]) == (0, 0)


@pytest.mark.parametrize("path", ["/v1/import", "/v1/b"])
def test_the_batch_endpoints_other_names_are_scoped_and_counted(
    kbr: KeybrakeThread, fake_segment: FakeSegment, path: str
) -> None:
    key = issue(kbr, daily_send_cap=3, allowed_events=["Order Completed"], allowed_types=["track"])
    ok = [{"type": "track", "userId": "u1", "event": "Order Completed"}] * 2
    assert httpx.post(f"{kbr.url}/segment{path}", json={"batch": ok}, auth=basic(key)).status_code == 200
    assert kbr.key(key["id"])["usage"]["daily_sends"]["used"] == 2
    for batch in ([{"type": "identify", "userId": "u1"}], [{"type": "track", "userId": "u1", "event": "Refund"}]):
        r = httpx.post(f"{kbr.url}/segment{path}", json={"batch": batch}, auth=basic(key))
        assert r.status_code == 403 and r.json()["code"] == "scope_violation", batch
    r = httpx.post(f"{kbr.url}/segment{path}", json={"batch": ok}, auth=basic(key))
    assert r.status_code == 429  # 2 + 2 > daily_send_cap 3
    assert kinds(fake_segment) == [("track", "Order Completed")] * 2


def test_short_names_and_unlisted_endpoints(kbr: KeybrakeThread, fake_segment: FakeSegment) -> None:
    key = issue(kbr, daily_send_cap=5, allowed_events=["Order Completed"])
    for event, status in (("Order Completed", 200), ("Refund", 403)):
        r = httpx.post(f"{kbr.url}/segment/v1/t", json={"userId": "u1", "event": event}, auth=basic(key))
        assert r.status_code == status, event
    assert kbr.key(key["id"])["usage"]["daily_sends"]["used"] == 1
    r = httpx.post(f"{kbr.url}/segment/v1/replay", json={"batch": []}, auth=basic(key))
    assert r.status_code == 403 and "not described by the Segment" in r.json()["message"]
    assert kinds(fake_segment) == [("track", "Order Completed")]
