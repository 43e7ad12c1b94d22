"""The demo's own judge: a run that does not stop where the cap must stop it, or whose audit trail
or money does not add up, is reported (and `keybrake demo` exits 1), never passed as OK."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keybrake.demo.agent import Attempt
from keybrake.demo.checks import check
from keybrake.demo.run import Outcome

pytestmark = pytest.mark.store_free
CAP_DOC = {"error": {"code": "spend_cap_exceeded", "keybrake": {"cap": {"requested_usd": Decimal(25)}}}}


def _run(through: int, attempts: int = 6, per_call: Decimal = Decimal(25)) -> Outcome:
    """A run of `attempts` $25 calls where the first `through` went through, with a matching trail."""
    out = Outcome("run-x", Path("/nonexistent"))
    for n in range(1, attempts + 1):
        ok = n <= through
        out.attempts.append(
            Attempt(n, 200 if ok else 429, None if ok else "spend_cap_exceeded", "", f"kbr_{n}", {} if ok else CAP_DOC)
        )
    out.after_revoke = Attempt(attempts + 1, 401, "key_revoked", "", f"kbr_{attempts + 1}", {})
    out.audit = [_row(a, per_call) for a in [*out.attempts, out.after_revoke]]
    out.moved_usd = per_call * through
    out.objects = [f"obj_{n}" for n in range(1, through + 1)]
    out.direct = [Attempt(n, 200, None, "", None, {}) for n in range(1, attempts + 1)]
    out.direct_moved_usd = per_call * attempts
    return out


def _row(a: Attempt, per_call: Decimal) -> dict[str, Any]:
    verdict = {200: "allowed", 429: "cap_exceeded", 401: "denied_key_revoked"}[a.status]
    moved = per_call if a.status == 200 else Decimal(0)
    return {"id": a.request_id, "verdict": verdict, "status": a.status, "cost_usd": moved,
            "reserved_usd": moved, "cost_source": "response" if moved else "none",
            "vendor_object_id": f"obj_{a.number}" if moved else None}  # fmt: skip


def test_a_run_that_stops_where_the_cap_must_passes() -> None:
    out = _run(4)
    check(out, Decimal(100), 6)
    assert out.problems == []


def test_one_call_too_many_is_reported() -> None:
    out = _run(5)  # $125 through a $100 cap
    check(out, Decimal(100), 6)
    assert any("expected attempts 1..4" in p for p in out.problems), out.problems


def test_stopping_early_is_reported() -> None:
    out = _run(3)
    check(out, Decimal(100), 6)
    assert any("expected attempts 1..4" in p for p in out.problems), out.problems


def test_a_missing_audit_row_and_a_wrong_verdict_are_reported() -> None:
    out = _run(4)
    out.audit.pop(0)
    out.audit[-1] = {**out.audit[-1], "verdict": "allowed"}
    check(out, Decimal(100), 6)
    assert any("6 rows for 7 calls" in p for p in out.problems), out.problems
    assert any("attempt 1: no audit row" in p for p in out.problems), out.problems
    assert any("attempt 7: audit row says allowed" in p for p in out.problems), out.problems


def test_money_the_trail_does_not_count_is_reported() -> None:
    out = _run(4)
    out.moved_usd += Decimal(25)  # the sandbox moved more than Keybrake counted
    check(out, Decimal(100), 6)
    assert any("the audit trail counts $100" in p for p in out.problems), out.problems


def test_a_revoked_key_that_still_works_is_reported() -> None:
    out = _run(4)
    out.after_revoke = Attempt(7, 200, None, "", "kbr_7", {})
    check(out, Decimal(100), 6)
    assert any("expected 401 key_revoked" in p for p in out.problems), out.problems


def test_an_object_the_trail_does_not_name_is_reported() -> None:
    out = _run(4)
    out.objects.append("obj_extra")  # the sandbox created one more than the allowed rows name
    check(out, Decimal(100), 6)
    assert any("created 5 objects, the audit trail names 4" in p for p in out.problems), out.problems


SEND_DOC = {"statusCode": 429, "name": "send_cap_exceeded", "keybrake": {"cap": {"requested": 3}}}


def _send_run(through: int, attempts: int = 8, per_call: int = 3, code: str = "send_cap_exceeded") -> Outcome:
    """A run of `attempts` emails to `per_call` recipients each, $0.0004 a recipient."""
    price = Decimal("0.0004") * per_call
    out = _run(through, attempts, price)
    out.attempts = [a if a.through else Attempt(a.number, 429, code, "", a.request_id, SEND_DOC) for a in out.attempts]
    out.sent, out.direct_sent = per_call * through, per_call * attempts
    return out


def test_a_send_cap_stops_at_the_call_it_computes() -> None:
    out = _send_run(6)  # 20 recipients at 3 a call: 6 calls
    check(out, Decimal(1), 8, send_cap=20)
    assert out.problems == []


def test_a_send_cap_passed_or_the_wrong_cap_is_reported() -> None:
    out = _send_run(7)  # 21 recipients through a 20-recipient cap
    check(out, Decimal(1), 8, send_cap=20)
    assert any("expected attempts 1..6" in p for p in out.problems), out.problems
    out = _send_run(6, code="spend_cap_exceeded")  # $1 is far from spent: the send cap must say so
    check(out, Decimal(1), 8, send_cap=20)
    assert any("expected 429 send_cap_exceeded, got 429 spend_cap_exceeded" in p for p in out.problems), out.problems


def test_sends_the_sandbox_received_beyond_the_trail_are_reported() -> None:
    out = _send_run(6)
    out.sent = 19
    check(out, Decimal(1), 8, send_cap=20)
    assert any("received 19 sends through Keybrake" in p for p in out.problems), out.problems
