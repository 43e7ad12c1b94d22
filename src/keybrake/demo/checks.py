"""What the demo expects of Keybrake, computed from the cap and what each call reserved — never
from fixed figures — and compared with what the agent got back, the audit trail and the sandbox."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keybrake.demo.run import Outcome


def usd(value: Any) -> Decimal:
    """An amount of the admin API's JSON (a number, parsed as Decimal) as Decimal; None is 0."""
    return Decimal(0) if value is None else Decimal(str(value))


def _requested(doc: Any) -> Decimal | None:
    """The `requested_usd` of a cap denial's detail (Stripe: `error.keybrake.cap`; Twilio: `details.cap`)."""
    if isinstance(doc, dict):
        if "requested_usd" in doc:
            return usd(doc["requested_usd"])
        for v in doc.values():
            found = _requested(v)
            if found is not None:
                return found
    return None


def reserved_per_call(out: Outcome) -> Decimal | None:
    """What Keybrake reserves for one call of the loop: the allowed rows' `reserved_usd` (all equal),
    else what the first cap denial says the call needed (`requested_usd`); None when neither is
    known or they differ (noted in `out.problems`)."""
    values = {usd(r.get("reserved_usd")) for r in out.audit if r.get("verdict") == "allowed"}
    refused = next((a for a in out.attempts if a.code == "spend_cap_exceeded"), None)
    needed = _requested(refused.doc) if refused is not None else None
    if needed is not None:
        values.add(needed)
    if len(values) > 1:
        out.problems.append(f"the allowed calls reserved different amounts: {sorted(values)}")
    return values.pop() if len(values) == 1 else None


def expected_through(out: Outcome, cap: Decimal, attempts: int) -> int | None:
    """How many calls a cap of `cap` USD lets through when each reserves the same amount: a call is
    refused when what is used plus what it reserves would exceed the cap. None if unknown."""
    per_call = reserved_per_call(out)
    if per_call is None or per_call <= 0:
        return None
    return min(attempts, int(cap // per_call))


def check(out: Outcome, cap: Decimal, attempts: int) -> None:
    """Append to `out.problems` every way the run differs from what the cap must do."""
    p = out.problems
    through = [a.number for a in out.attempts if a.through]
    k = expected_through(out, cap, attempts)
    if k is None:
        p.append("no call was allowed nor refused by the cap, so where the cap stops the loop cannot be checked")
        k = 0
    if through != list(range(1, k + 1)):
        p.append(f"expected attempts 1..{k} to go through and the rest to be refused; went through: {through}")
    for a in out.attempts[k:]:
        if (a.status, a.code) != (429, "spend_cap_exceeded"):
            p.append(f"attempt {a.number}: expected 429 spend_cap_exceeded, got {a.status} {a.code}")
    last = out.after_revoke
    if last is None or (last.status, last.code) != (401, "key_revoked"):
        p.append(f"the call after the revoke: expected 401 key_revoked, got {last and (last.status, last.code)}")
    _check_audit(out)
    _check_money(out, k, attempts)


def _check_audit(out: Outcome) -> None:
    rows = {r.get("id"): r for r in out.audit}
    calls = [*out.attempts, *([out.after_revoke] if out.after_revoke else [])]
    if len(out.audit) != len(calls):
        out.problems.append(f"the audit trail has {len(out.audit)} rows for {len(calls)} calls")
    for a in calls:
        row = rows.get(a.request_id)
        if row is None:
            out.problems.append(f"attempt {a.number}: no audit row {a.request_id}")
            continue
        want = "allowed" if a.through else ("cap_exceeded" if a.status == 429 else f"denied_{a.code}")
        if row.get("verdict") != want or row.get("status") != a.status:
            out.problems.append(
                f"attempt {a.number}: audit row says {row.get('verdict')} {row.get('status')}, "
                f"the agent got {a.status} (expected verdict {want})"
            )


def _check_money(out: Outcome, through: int, attempts: int) -> None:
    allowed = [r for r in out.audit if r.get("verdict") == "allowed"]
    if allowed and all(r.get("cost_source") == "response" for r in allowed):
        counted = sum((usd(r.get("cost_usd")) for r in allowed), Decimal(0))
        if counted != out.moved_usd:
            out.problems.append(f"the audit trail counts ${counted} but the sandbox moved ${out.moved_usd}")
    if out.direct and all(a.through for a in out.direct):
        per_call = out.direct_moved_usd / attempts
        if out.moved_usd != per_call * through:
            out.problems.append(
                f"the sandbox moved ${out.moved_usd} through Keybrake, expected {through} × ${per_call}"
            )
