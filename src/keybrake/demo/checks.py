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


def _requested(doc: Any, field: str = "requested_usd") -> Decimal | None:
    """The `requested_usd` (or `requested`: sends) of a cap denial's detail (Stripe:
    `error.keybrake.cap`; Twilio: `details.cap`; Resend: `keybrake.cap`)."""
    if isinstance(doc, dict):
        if field in doc:
            return usd(doc[field])
        for v in doc.values():
            found = _requested(v, field)
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


def sends_per_call(out: Outcome) -> int | None:
    """What one call of the loop sends (`daily_send_cap` units): what the sandbox received without
    Keybrake over the calls it accepted (all equal), else the `requested` of the first send cap
    denial; None when unknown or a call differs (noted in `out.problems`)."""
    accepted = sum(1 for a in out.direct if a.through)
    refused = next((a for a in out.attempts if a.code == "send_cap_exceeded"), None)
    needed = _requested(refused.doc, "requested") if refused is not None else None
    values = {Decimal(out.direct_sent) / accepted} if out.direct_sent is not None and accepted else set()
    if needed is not None:
        values.add(needed)
    if len(values) > 1:
        out.problems.append(f"the calls sent different counts: {sorted(values)}")
    value = values.pop() if len(values) == 1 else None
    return int(value) if value is not None and value == int(value) else None


def expected_through(out: Outcome, cap: Decimal, attempts: int, send_cap: int | None = None) -> tuple[int, set[str]]:
    """How many calls the caps let through when each reserves the same amount (a call is refused
    when what is used plus what it needs would exceed a cap: `cap` USD and, when set, `send_cap`
    sends), and the refusal codes the caps that stop it give (`spend_cap_exceeded`,
    `send_cap_exceeded`; both when they stop it at the same call). Raises LookupError when what a
    call needs is unknown."""
    limits: dict[str, int] = {}
    per_call = reserved_per_call(out)
    if per_call is not None and per_call > 0:
        limits["spend_cap_exceeded"] = int(cap // per_call)
    if send_cap is not None:
        sends = sends_per_call(out)
        if sends is None or sends <= 0:
            raise LookupError("what one call sends")
        limits["send_cap_exceeded"] = send_cap // sends
    if not limits:
        raise LookupError("what one call reserves")
    k = min(limits.values())
    return min(attempts, k), {code for code, v in limits.items() if v == k}


def check(out: Outcome, cap: Decimal, attempts: int, send_cap: int | None = None) -> None:
    """Append to `out.problems` every way the run differs from what the caps must do."""
    p = out.problems
    through = [a.number for a in out.attempts if a.through]
    try:
        k, codes = expected_through(out, cap, attempts, send_cap)
    except LookupError as exc:
        p.append(f"{exc} is not known (no call was allowed nor refused by a cap), so where the caps stop the loop "
                 "cannot be checked")  # fmt: skip
        k, codes = 0, {"spend_cap_exceeded"}
    if through != list(range(1, k + 1)):
        p.append(f"expected attempts 1..{k} to go through and the rest to be refused; went through: {through}")
    for a in out.attempts[k:]:
        if a.status != 429 or a.code not in codes:
            p.append(f"attempt {a.number}: expected 429 {' or '.join(sorted(codes))}, got {a.status} {a.code}")
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
    # Settled from the vendor's answer, or at the flat rate the sandbox bills (Resend).
    if allowed and all(r.get("cost_source") in ("response", "flat_rate") for r in allowed):
        counted = sum((usd(r.get("cost_usd")) for r in allowed), Decimal(0))
        if counted != out.moved_usd:
            out.problems.append(f"the audit trail counts ${counted} but the sandbox moved ${out.moved_usd}")
    ids = sorted(str(r.get("vendor_object_id")) for r in allowed)
    if ids != sorted(out.objects):
        out.problems.append(f"the sandbox created {len(out.objects)} objects, the audit trail names {len(ids)} "
                            "(vendor_object_id) or other ones")  # fmt: skip
    counts = [(r.get("request_summary") or {}).get("recipient_count") for r in allowed]
    recipients = sum(c for c in counts if isinstance(c, int))
    if out.sent is not None and counts and all(isinstance(c, int) for c in counts) and recipients != out.sent:
        out.problems.append(f"the audit trail counts {recipients} recipients, the sandbox received {out.sent}")
    if out.direct and all(a.through for a in out.direct):
        per_call = out.direct_moved_usd / attempts
        if out.moved_usd != per_call * through:
            out.problems.append(
                f"the sandbox moved ${out.moved_usd} through Keybrake, expected {through} × ${per_call}"
            )
        if out.sent is not None and out.direct_sent is not None and out.sent * attempts != out.direct_sent * through:
            out.problems.append(
                f"the sandbox received {out.sent} sends through Keybrake, expected {through} × "
                f"{out.direct_sent}/{attempts}"
            )
