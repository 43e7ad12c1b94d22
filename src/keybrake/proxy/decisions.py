"""The pipeline's pure decisions: which pattern admits a request, what it may reserve, which
counters it reserves against, how its refusals read. No I/O: the pipeline calls these with the
request, the key and its policy, and acts on the result.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from keybrake.core.caps import KEY_CAPS, Cap
from keybrake.core.errors import Denial
from keybrake.core.money import human_usd
from keybrake.core.paths import join
from keybrake.core.patterns import first_match
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.core.timefmt import rfc3339
from keybrake.store.base import CapSpec, DedupCheck, KeyRecord, KeyState, Settlement
from keybrake.vendors.base import Estimate, Vendor, VendorRequest


def unknown_outcome(reserved: int, estimate: Estimate) -> Settlement:
    """Sent, no definite answer: the reservation stays until reconciled (docs/policy.md, settlement)."""
    return Settlement(
        "outcome_unknown", reserved, "estimate", estimate.cost_kind, keep_reservation=True, forwarded=True
    )


_CAP_WORDS = {
    "daily_usd_cap": "daily spend cap",
    "total_usd_cap": "total spend cap",
    "max_requests_per_hour": "hourly request cap",
    "daily_send_cap": "daily send cap",
    "daily_graphql_cost_points": "daily GraphQL cost points cap",
    "monthly_usd_cap": "monthly spend cap",
    "daily_request_cap": "daily request cap",
}
# The most one request may reserve (µUSD): $1 billion. Far above any vendor's per-call limit,
# far below where a counter's 64-bit sum could overflow.
MAX_ESTIMATE_MICRO = 10**15


def check_estimate_bounds(estimate: Estimate, vendor_name: str) -> None:
    """Refuse an estimate beyond anything a vendor moves in one call (400 body_invalid).

    Keeps every amount that reaches the counters' arithmetic exact and far inside 64-bit integers.
    """
    if not 0 <= estimate.amount <= MAX_ESTIMATE_MICRO:
        raise Denial(
            "body_invalid",
            f"This call would move more than {human_usd(MAX_ESTIMATE_MICRO)} in one request, which no "
            f"{vendor_name} call can. Check the amount. Do not retry unchanged.",
        )


def caps_for(key: KeyRecord, policy: Policy, estimate: Estimate) -> list[CapSpec]:
    """Every counter a request reserves against, in the fixed lock order (key, then budgets).

    The key's daily and total USD counters, hourly request counter and (for sends) daily send
    counter are always kept, capped or not, so that a cap added later by PATCH counts what was
    already spent.
    """

    def amount(c: Cap) -> int:
        if c.is_usd:
            return estimate.amount
        return estimate.sends if c.counts == "send" else estimate.points if c.counts == "points" else 1

    def limit(c: Cap) -> Any:
        return policy.vendor_data.get(c.field) if c.vendor_field else getattr(policy, c.field)

    return [
        CapSpec("key", key.id, c.field, c.counter, c.window, limit(c), amount(c), c.is_usd)
        for c in KEY_CAPS
        # a send or points counter only for a request that sends or uses points
        if (c.counts != "send" or estimate.sends) and (c.counts != "points" or estimate.points)
    ]


def dedup_check(policy: Policy, vendor: Vendor, vreq: VendorRequest) -> DedupCheck | None:
    if not policy.dedup_window_seconds or vreq.method != "POST":
        return None
    fingerprint = vendor.dedup_fingerprint(vreq)
    return DedupCheck(fingerprint, policy.dedup_window_seconds * 1000) if fingerprint else None


def state_denial(state: KeyState, key: KeyRecord) -> Denial:
    if state is KeyState.REVOKED:
        why = f" ({key.revoke_reason})" if key.revoke_reason else ""
        return Denial("key_revoked", f"Vault key {key.id} was revoked{why}. Do not retry.")
    if state is KeyState.EXPIRED:
        return Denial(
            "key_expired", f"Vault key {key.id} expired at {rfc3339(key.expires_at)}. Do not retry; ask for a new key."
        )
    return Denial("key_invalid", "Unknown vault key. Do not retry.")


def lookup_hint(lookup: dict[str, Any] | None) -> str:
    """What a pre-flight lookup that found no facts answered (`lookup`: the audit row's
    preflight_lookup, {"object", "status"} or {"object", "error"}), as a sentence for a refusal
    whose cause is the call's unknown amount: a 404 means a wrong id, which no waiting can help.
    "" when there was no lookup or it answered 200."""
    if lookup is None:
        return ""
    answer = lookup.get("status") or lookup.get("error")
    if answer == 404:
        return f"{lookup['object']} was not found at the vendor (404): check the id."
    return "" if answer in (None, 200) else f"Looking up {lookup['object']} failed ({answer})."


def with_lookup(denial: Denial, lookup: dict[str, Any] | None) -> Denial:
    """`denial` led by lookup_hint when it refuses a call for its unknown amount
    (unpriceable_request): the likely cause (a wrong id) first, then why its amount is unknown
    (newcomer run: the hint came last, after advice for the operator). Any other denial as it is."""
    hint = lookup_hint(lookup) if denial.code == "unpriceable_request" else ""
    return replace(denial, message=f"{hint} {denial.message}") if hint else denial


def unpriced_note(estimate: Estimate, lookup: dict[str, Any] | None) -> str:
    """Why a call reserves its key's max_usd_per_call, for a USD cap's refusal: its amount cannot
    be known before it is sent (a refund without an amount, its charge unknown), with what the
    pre-flight lookup answered (lookup_hint). "" for a priced call."""
    if estimate.pricing != "unpriceable":
        return ""
    hint = lookup_hint(lookup)
    return (
        "Its amount cannot be known before it is sent, so it reserves the key's max_usd_per_call "
        f"({human_usd(estimate.amount)}).{' ' + hint if hint else ''}"
    )


def cap_denial(cap: Any, key_id: str, note: str = "") -> Denial:
    """The refusal of a call a cap stops (`cap`: the store's CapHit), naming the cap, what it has
    used, what this call needs and when it resets; `note` (unpriced_note) says why a USD cap's
    "needs" is the per-call bound."""
    words = _CAP_WORDS.get(cap.name, cap.name)
    whose = key_id if cap.scope == "key" else f"budget {cap.id}, which covers {key_id}"
    if cap.is_usd:
        limit = human_usd(cap.limit)
        detail = f"{human_usd(cap.used)} used, this call needs {human_usd(cap.requested)}"
        code = "spend_cap_exceeded"
    elif cap.name == "daily_send_cap":
        limit = str(cap.limit)
        detail = f"{cap.used} sent, this call sends {cap.requested}; a batch is admitted or refused whole"
        code = "send_cap_exceeded"
    elif cap.name == "daily_graphql_cost_points":
        limit = f"{cap.limit} points"
        detail = f"{cap.used} used or held, this call reserves up to {cap.requested}, the most one call can cost"
        code = "request_cap_exceeded"
    else:
        limit = str(cap.limit)
        detail = f"{cap.used} used"
        code = "request_cap_exceeded"
    when = f" It resets at {rfc3339(cap.resets_at_ms)}." if cap.resets_at_ms is not None else ""
    if code == "request_cap_exceeded" and cap.name != "daily_graphql_cost_points":  # one request more: reached
        return Denial(code, f"Do not retry: {words} of {limit} reached for {whose} ({detail}).{when}", cap=cap)
    # A USD or send cap may refuse a call that would pass it, well before it is reached.
    why = f" {note}" if note and cap.is_usd else ""
    message = f"Do not retry: this call would exceed the {words} of {limit} for {whose} ({detail}).{why}{when}"
    return Denial(code, message, cap=cap)


def read_idempotency_key(req: ProxyRequest, vendor: Vendor) -> str | None:
    """The request's one Idempotency-Key, whole; refused (Denial `header_invalid`) when repeated,
    empty, longer than the vendor takes, or not printable ASCII.

    Keys are compared whole (never truncated): two keys differing in their last character are two
    requests to the vendor, so they must be two requests to Keybrake too.
    """
    values = req.header_all(vendor.idempotency_header)  # `Idempotency-Key` unless the vendor names another
    if not values:
        return None
    if len(values) > 1:
        raise Denial("header_invalid", f"Send one {vendor.idempotency_header} header; this request carries several.")
    key = values[0]
    if not all(" " <= c <= "~" for c in key):
        # Headers arrive as bytes and are read as latin-1: a UTF-8 key would be stored garbled
        # and no `idempotency_key_prefix` filter (UTF-8) would find it. SDKs send UUIDs.
        raise Denial(
            "header_invalid",
            "The Idempotency-Key header must be printable ASCII (space to '~'; SDKs send UUIDs); "
            "this one has another byte. Do not retry unchanged.",
        )
    limit = vendor.idempotency_key_max_length
    if not key.strip() or len(key) > limit:
        raise Denial(
            "header_invalid",
            f"The Idempotency-Key header must be 1 to {limit} characters for {vendor.name} "
            f"(got {len(key)}). Do not retry unchanged.",
        )
    return key


def vendor_keeps(status: int, vendor: Vendor) -> bool:
    """Whether the vendor stores this answer under the Idempotency-Key (and so replays it to a retry)."""
    return 200 <= status < 300 or status in vendor.idempotency_cached_statuses


def match_endpoint(policy: Policy, vendor: Vendor, vreq: VendorRequest) -> str | None:
    """The `allowed_endpoints` pattern that admits the request (None: no allowlist), or a Denial.

    Guarded endpoints are admitted only by a pattern naming them with literal segments.
    """
    guarded = first_match(vendor.guarded, vreq.method, vreq.path)
    if guarded is not None:
        # Only a pattern naming this endpoint outright admits it; wildcards and an absent
        # allowlist never do (docs/policy.md, guarded endpoints). Keys can carry such a pattern only when issued
        # with an admin-scope token: issuer-scope tokens cannot widen past their own limits.
        literal = [p for p in policy.allowed_endpoints or () if p.is_literal() and p.matches(vreq.method, vreq.path)]
        if not literal:
            raise Denial(
                "endpoint_guarded",
                f"{vreq.method} {join(vreq.path)} is a guarded {vendor.name} endpoint ({guarded.text}: it can "
                "return or mint secrets, or redirect money or events). Only a key whose allowed_endpoints "
                "names it literally may call it. Do not retry.",
            )
        return literal[0].text
    if policy.allowed_endpoints is None:
        return None
    matched = first_match(policy.allowed_endpoints, vreq.method, vreq.path)
    if matched is None:
        raise Denial(
            "endpoint_not_allowed",
            f"{vreq.method} {join(vreq.path)} is not in this key's "
            "allowed_endpoints. Do not retry; ask the operator to allow it.",
        )
    return matched.text


def json_or_none(body: bytes, headers: dict[str, str]) -> Any:
    """The JSON document of a vendor answer (headers by lower-case name), or None when it is not JSON."""
    if "json" not in headers.get("content-type", "") or not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def with_mcp_hint(denial: Denial, path: str) -> Denial:
    """`denial` saying where Keybrake serves MCP when the refused request's `path` (as the audit
    row has it) ends in `/mcp`: an MCP client pointed at `http://host:8080/mcp` or `/stripe/mcp`
    is a call to the key's vendor, and its refusal (415 for a JSON body, endpoint_not_allowed) gave
    no clue (newcomer run, 2026-12-02). Any other denial as it is."""
    if path.rstrip("/").rsplit("/", 1)[-1].lower() != "mcp":
        return denial
    return replace(denial, message=f"{denial.message} Keybrake serves MCP at /_keybrake/mcp, not at {path[:80]}.")
