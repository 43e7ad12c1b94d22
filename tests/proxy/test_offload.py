"""A large body is parsed and checked off the event loop, deciding exactly what the loop would
(proxy/offload.py). Red team, 2026-12-02: a legal 29 MB Resend send of a million small tags was
parsed on the event loop and held every other key's requests 7–9 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake import deadline
from keybrake.core.errors import Denial
from keybrake.proxy import decide, offload
from keybrake.proxy.echoes import check_vault_key_placement
from tests.proxy.build import PEPPER, VENDORS, email, key, request

pytestmark = pytest.mark.store_free

TOKEN = "vault_key_" + "Q" * 49


def _route(vendor: str, req: Any) -> decide.Route:
    where = decide.route(req, key(vendor), VENDORS)
    assert isinstance(where, decide.Route), where
    return where


def _resend(tags: int, pad: int = 0, extra: str = "") -> Any:
    body = email("a@example.com", tags=[{"name": "a", "value": "b"}] * tags, text="x" * pad + extra)
    return request("POST", "/resend/emails", json_body=body)


def _on_the_loop(req: Any, where: decide.Route) -> tuple[Any, Denial | None]:
    """What the event loop decided before: the parse, then the placement check when it parsed."""
    parsed = decide.parse(req, where, None, PEPPER)
    if isinstance(parsed, decide.Refusal):
        return parsed, None
    try:
        check_vault_key_placement(TOKEN, req, where.vendor, where.vendor.upstream_body(parsed.vreq, req.body))
    except Denial as denial:
        return parsed, denial
    return parsed, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, decide.Refusal) or isinstance(b, decide.Refusal):
        return (
            type(a) is type(b)
            and (a.denial.code, a.denial.message) == (b.denial.code, b.denial.message)
            and a.notes == b.notes
        )
    return bool(a.vreq == b.vreq and a.retry == b.retry and a.notes == b.notes)


def test_a_large_body_is_parsed_on_the_body_thread_and_a_small_one_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    parse = decide.parse

    def spy(*args: Any) -> Any:
        seen.append(threading.current_thread().name)
        return parse(*args)

    monkeypatch.setattr(decide, "parse", spy)
    small, large = _resend(10), _resend(0, pad=offload.LARGE_BODY_BYTES)
    assert len(small.body) <= offload.LARGE_BODY_BYTES < len(large.body)

    async def both() -> str:
        await offload.prepare(small, TOKEN, _route("resend", small), None, PEPPER)
        await offload.prepare(large, TOKEN, _route("resend", large), None, PEPPER)
        return threading.current_thread().name

    loop_thread = asyncio.run(both())
    assert seen[0] == loop_thread and seen[1].startswith("keybrake-body"), seen


def test_time_on_the_body_thread_moves_the_requests_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline bounds waiting on the store: 1 s of parse leaves a 0.5 s deadline unspent."""
    parse = decide.parse

    def slow(*args: Any) -> Any:
        time.sleep(1.0)
        return parse(*args)

    monkeypatch.setattr(decide, "parse", slow)
    req = _resend(0, pad=offload.LARGE_BODY_BYTES)

    async def run() -> float:
        d = deadline.start(0.5)
        await offload.prepare(req, TOKEN, _route("resend", req), None, PEPPER)
        return d.remaining()

    assert asyncio.run(run()) > 0  # without the move: about -0.5


ENCODINGS = st.sampled_from([lambda t: t, lambda t: quote(t, safe=""), lambda t: quote(quote(t, safe=""), safe="")])


@settings(max_examples=40, deadline=None)
@given(
    tags=st.integers(0, 3000),
    pad=st.sampled_from([0, offload.LARGE_BODY_BYTES - 600, offload.LARGE_BODY_BYTES]),
    carries_key=st.booleans(),
    encode=ENCODINGS,
    duplicate=st.booleans(),
)
def test_off_the_loop_decides_what_the_loop_would(
    tags: int, pad: int, carries_key: bool, encode: Any, duplicate: bool
) -> None:
    """Any Resend body, either side of the line: the same parse, refusal and placement refusal."""
    req = _resend(tags, pad, encode(TOKEN) if carries_key else "")
    if duplicate:  # a duplicate member: the parse's own refusal
        req = request(
            "POST", "/resend/emails", body=req.body[:-1] + b', "to": "b@example.com"}', ctype="application/json"
        )
    where = _route("resend", req)
    want_parsed, want_placement = _on_the_loop(req, where)
    got = asyncio.run(offload.prepare(req, TOKEN, where, None, PEPPER))
    assert _same(got.parsed, want_parsed)
    assert (got.placement is None) == (want_placement is None)
    if want_placement is not None and got.placement is not None:
        assert (got.placement.code, got.placement.message) == (want_placement.code, want_placement.message)
    if carries_key and not duplicate:
        assert got.placement is not None and got.placement.code == "key_ambiguous"


@settings(max_examples=25, deadline=None)
@given(pairs=st.integers(0, 6000), carries_key=st.booleans())
def test_a_stripe_form_either_side_of_the_line_decides_the_same(pairs: int, carries_key: bool) -> None:
    form = [("amount", "100"), ("currency", "usd"), *((f"metadata[k{i}]", "v" * 8) for i in range(pairs))]
    if carries_key:
        form.append(("description", TOKEN))
    req = request("POST", "/stripe/v1/charges", form=form)
    where = _route("stripe", req)
    want_parsed, want_placement = _on_the_loop(req, where)
    got = asyncio.run(offload.prepare(req, TOKEN, where, None, PEPPER))
    assert _same(got.parsed, want_parsed)
    assert (got.placement is None) == (want_placement is None) and (got.placement is not None) == carries_key


def test_waiting_behind_another_body_counts_and_a_request_past_its_deadline_is_never_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Second red team: behind other large bodies a request waited 22 s and was then forwarded,
    after its client had timed out. The wait counts: past the deadline it is refused (503, nothing
    forwarded) and its parse never runs — the thread goes on to bodies someone still waits for."""
    parse, parsed = decide.parse, []

    def slow(req: Any, *args: Any) -> Any:
        parsed.append(req)
        time.sleep(1.0)
        return parse(req, *args)

    monkeypatch.setattr(decide, "parse", slow)
    first, second = _resend(0, pad=offload.LARGE_BODY_BYTES), _resend(1, pad=offload.LARGE_BODY_BYTES)

    async def one(req: Any, seconds: float) -> offload.Prepared:
        deadline.start(seconds)
        return await offload.prepare(req, TOKEN, _route("resend", req), None, PEPPER)

    async def both() -> tuple[Any, ...]:
        ahead = asyncio.create_task(one(first, 5.0))
        await asyncio.sleep(0.05)  # `first` holds the thread
        return await asyncio.gather(ahead, one(second, 0.3), return_exceptions=True)

    got = asyncio.run(both())
    assert isinstance(got[0], offload.Prepared)
    refused = got[1]
    assert isinstance(refused, Denial) and refused.code == "enforcement_unavailable" and refused.retryable
    assert refused.message == offload.QUEUED_TOO_LONG
    assert parsed == [first]  # the late one was never parsed


def test_off_loop_runs_small_work_in_place_and_large_work_on_the_thread() -> None:
    async def where(size: int) -> tuple[str, str]:
        return threading.current_thread().name, await offload.off_loop(size, lambda: threading.current_thread().name)

    loop_thread, small = asyncio.run(where(offload.LARGE_BODY_BYTES))
    assert small == loop_thread
    _, large = asyncio.run(where(offload.LARGE_BODY_BYTES + 1))
    assert large.startswith("keybrake-body")


def test_a_cancelled_waiters_work_is_skipped() -> None:
    ran: list[str] = []

    async def run() -> None:
        hold = asyncio.create_task(offload.off_loop(10**6, time.sleep, 0.5))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(offload.off_loop(10**6, ran.append, "late"))
        await asyncio.sleep(0.05)
        waiter.cancel()  # its client hung up while it waited
        await hold
        await offload.off_loop(10**6, ran.append, "after")  # one thread, in order: the late one had its turn

    asyncio.run(run())
    assert ran == ["after"]
