"""Large bodies through a running Keybrake: checked in full off the event loop (proxy/offload.py),
and never a stall of everyone else's requests.

Red team, 2026-12-02: a Resend key sent a legal 29 MB body of a million small tags; its parse ran
on the event loop and /healthz (and another key's payments) waited 7–9 s; the request itself was
answered 503 "the request's deadline passed before the store was reached".
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from keybrake.core.body_values import MAX_BODY_VALUES
from keybrake.proxy.offload import LARGE_BODY_BYTES
from tests.fakes.resend_server import FakeResend
from tests.harness import KeybrakeThread
from tests.waits import healthz_while

SENDER = "Acme <bot@mail.acme.io>"


def _send(kb: KeybrakeThread, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/resend/emails",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=120,
    )


def _email(tags: int, text: str = "hi") -> dict[str, Any]:
    tag_list = [{"name": "a", "value": "b"}] * tags
    return {"from": SENDER, "to": "a@example.com", "subject": "s", "text": text, "tags": tag_list}


def test_a_large_body_is_checked_in_full_and_recorded(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    key = kbr.issue({"daily_usd_cap": 1, "allowed_to_domains": ["example.com"]}, vendor="resend", label="test:big")
    token = str(key["key"])
    big = _email(5000)
    assert len(json.dumps(big)) > LARGE_BODY_BYTES
    sent = _send(kbr, token, big)
    assert sent.status_code == 200, sent.text
    # out of scope, the key percent-encoded in the text, a duplicate member: each refused by name
    # (Resend's error shape: the code is `name`)
    outside = _send(kbr, token, {**big, "to": "a@elsewhere.com"})
    assert outside.status_code == 403 and outside.json()["name"] == "scope_violation", outside.text
    echoed = _send(kbr, token, _email(5000, text=quote(token, safe="")))
    assert echoed.status_code == 400 and echoed.json()["name"] == "key_ambiguous", echoed.text
    raw = json.dumps(big).encode()[:-1] + b', "to": "b@example.com"}'
    duplicate = httpx.post(
        f"{kbr.url}/resend/emails",
        content=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert duplicate.status_code == 400, duplicate.text
    rows = kbr.audit(key_id=key["id"])
    assert sorted(r["verdict"] for r in rows) == sorted(
        ["allowed", "denied_scope_violation", "denied_key_ambiguous", "denied_" + duplicate.json()["name"]]
    ), rows
    assert len([r for r in fake_resend.requests if r.method == "POST"]) == 1
    assert token not in json.dumps(rows)


def test_a_large_bodys_plan_and_a_large_answers_scrub_run_off_the_event_loop(
    kbr: KeybrakeThread, fake_resend: FakeResend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second red team: a dedup fingerprint (decide.plan) of a 43 MB body held the loop 1.8 s, and
    scrubbing a 10 MB answer for the secret 0.3 s per GET. Both now follow the body's size."""
    from keybrake.proxy import decide, echoes, forward

    threads: dict[str, list[str]] = {"plan": [], "scrub": []}
    plan, scrub = decide.plan, echoes.scrub_answer

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            threads[name].append(threading.current_thread().name)
            return fn(*args)

        return wrapped

    monkeypatch.setattr(decide, "plan", spy("plan", plan))
    monkeypatch.setattr(forward, "scrub_answer", spy("scrub", scrub))
    key = kbr.issue({"daily_usd_cap": 1, "dedup_window_seconds": 60}, vendor="resend", label="test:big")
    token = str(key["key"])
    small = _send(kbr, token, _email(1))
    large = _send(kbr, token, _email(0, text="r" * (LARGE_BODY_BYTES + 1)))
    assert small.status_code == 200 and large.status_code == 200, (small.text, large.text)
    got = httpx.get(f"{kbr.url}/resend/emails/{large.json()['id']}", headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200 and len(got.content) > LARGE_BODY_BYTES
    assert [t.startswith("keybrake-body") for t in threads["plan"]] == [False, True, False], threads
    assert [t.startswith("keybrake-body") for t in threads["scrub"]] == [False, False, True], threads


@pytest.mark.timing
def test_a_body_of_many_small_values_does_not_stall_other_requests(
    kbr: KeybrakeThread, fake_resend: FakeResend
) -> None:
    """160,000 tags (4.6 MB, 480,000 values — just under MAX_BODY_VALUES): its parse takes about a
    second of CPU; meanwhile /healthz is answered as usual. Before: /healthz waited as long as the
    parse (3.6 s for 600,000 tags here, 7–9 s for a million measured by the red team — bodies that
    large are now refused outright, see test_a_body_of_too_many_values_is_refused_before_its_parse)."""
    key = kbr.issue({"daily_usd_cap": 1}, vendor="resend", label="test:big")
    body = _email(160_000)
    r, waits = healthz_while(kbr.url, lambda: _send(kbr, str(key["key"]), body))
    print(f"\n/healthz while a 4.6 MB body is checked: {len(waits)} probes, max {max(waits) * 1000:.0f} ms")
    # answered on its merits (the fake Resend's verdict), not 503 for the time its parse took
    assert r.status_code != 503, r.text
    assert len(waits) > 5, waits  # the send took long enough to measure anything
    assert max(waits) < 0.5, f"/healthz waited {max(waits):.2f} s (of {len(waits)} probes)"


def test_a_body_of_too_many_values_is_refused_before_its_parse(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    """Third red team: a 42 MB body of tiny values held the interpreter lock 1–2.7 s in single C
    calls (a dedup fingerprint's json.dumps, an Idempotency-Key fingerprint) that no thread can
    share. A body that may hold more than MAX_BODY_VALUES values is refused 413 before any of it,
    audited; one just under goes through."""
    key = kbr.issue({"daily_usd_cap": 1, "dedup_window_seconds": 60}, vendor="resend", label="test:big")
    token = str(key["key"])
    per_tag = 3  # `{` and two `,` per {"name": "a", "value": "b"} in a list
    under = _send(kbr, token, _email((MAX_BODY_VALUES - 100) // per_tag))
    over = _send(kbr, token, _email(MAX_BODY_VALUES // per_tag + 10))
    assert under.status_code == 200, under.text
    assert over.status_code == 413 and over.json()["name"] == "body_too_large", over.text
    assert "500,000 values" in over.json()["message"]
    rows = kbr.audit(key_id=key["id"])
    assert sorted(r["verdict"] for r in rows) == ["allowed", "denied_body_too_large"]
    assert len([r for r in fake_resend.requests if r.method == "POST"]) == 1
