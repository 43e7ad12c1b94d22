"""The decision before forwarding, as pure functions of the request, the key and its policy.

The shell (proxy/pipeline.py) calls them in this order and acts on what they return:

    route  → parse  → admit  → [vendor lookup: proxy/facts.py] → plan  → [reserve] → upstream_request

Each returns its result or a `Refusal` — the Denial to answer with, plus the audit-row fields
(`RowNotes`) learnt before it was refused, so the row of a refused request says as much as the
row of an allowed one. No I/O, no clock, no store: every input is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypedDict
from urllib.parse import urlencode

from keybrake.core.body_values import TOO_MANY_VALUES, too_many_values
from keybrake.core.caps import KEY_CAPS
from keybrake.core.errors import CapHit, Denial
from keybrake.core.ledger import LedgerEntry
from keybrake.core.params import check_charset, check_no_body
from keybrake.core.paths import join, normalise_path
from keybrake.core.policy import Policy, check_max_per_call, check_param_rules
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamRequest
from keybrake.core.windows import resets_at
from keybrake.proxy.decisions import (
    caps_for,
    check_estimate_bounds,
    dedup_check,
    match_endpoint,
    read_idempotency_key,
)
from keybrake.store.base import AuditRow, CapSpec, DedupCheck, KeyRecord, ObjectGuard, ReserveResult, RetryCheck
from keybrake.vendors.base import (
    COMMON_FORWARDED_HEADERS,
    Estimate,
    Rates,
    ScopeResult,
    Vendor,
    VendorRequest,
    content_type,
)

SUPPORTED_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
# The key cap a vendor lookup is counted against (a refused request's lookup still used the secret).
REQUEST_CAP = next(c for c in KEY_CAPS if c.field == "max_requests_per_hour")


class RowNotes(TypedDict, total=False):
    """Audit-row fields (store.base.AuditRow, same names and types) a decision has established."""

    path: str
    endpoint: str | None
    request_summary: dict[str, Any] | None
    account_context: str | None
    idempotency_key: str | None
    body_hash: str | None
    customer_scope_id: str | None
    reserved_usd: int
    cost_kind: str
    cost_source: str
    upstream_status: int | None
    vendor_request_id: str | None
    vendor_object_id: str | None
    reason: str | None
    redacted_fields: list[str] | None
    status: int | None


def note(row: AuditRow, notes: RowNotes) -> None:
    """Write `notes` onto the row (the shell's one way of recording what a decision learnt)."""
    for name, value in notes.items():
        setattr(row, name, value)


@dataclass(frozen=True)
class Refusal:
    """Refuse the request with `denial`; `notes` are the row fields known when it was refused."""

    denial: Denial
    notes: RowNotes


class Decided(Protocol):
    """A decision's result: it carries the row fields it established."""

    @property
    def notes(self) -> RowNotes: ...


@dataclass(frozen=True)
class Route:
    """The key's vendor and the operation the path names: `segments` in the vendor's one
    canonical spelling (every check and the audit row see it), `raw_rest` the agent's own bytes
    after the vendor prefix (what is forwarded)."""

    vendor: Vendor
    segments: tuple[str, ...]
    raw_rest: bytes
    notes: RowNotes


def route(req: ProxyRequest, key: KeyRecord, vendors: dict[str, Vendor]) -> Route | Refusal:
    """Route to the key's vendor: refuses an unproxied method (405 method_not_supported), a path
    that is not plain (400 path_invalid: dot segments, encoded slashes, double encoding, `//`, a
    spelling the vendor does not document) or prefixed with another vendor's name (vendor_mismatch)."""
    try:
        if req.method not in SUPPORTED_METHODS:
            message = f"Method {req.method[:10]} is not proxied; use GET, POST, PATCH, PUT or DELETE."
            raise Denial("method_not_supported", message)
        raw = req.raw_path
        vendor = vendors.get(key.vendor)
        if vendor is None:  # a vendor defined by a file that this process did not load (removed, another replica's)
            message = f"This vault key is for {key.vendor}, which this server does not serve. Nothing was sent."
            raise Denial("vendor_mismatch", message)
        if vendor.trailing_slash and len(raw) > 1 and raw.endswith(b"/") and raw[-2:] != b"//":
            raw = raw[:-1]  # `/a/b/` is `/a/b` to this vendor: classified as such, forwarded as sent
        segments = normalise_path(raw)
        raw_rest = req.raw_path
        if segments and segments[0] in vendors:
            if segments[0] != key.vendor:
                message = f"This vault key is for {key.vendor}, not {segments[0]}. Do not retry with this key."
                raise Denial("vendor_mismatch", message)
            segments = segments[1:]
            raw_rest = b"/" + req.raw_path.split(b"/", 2)[2] if req.raw_path.count(b"/") >= 2 else b"/"
        vendor = vendors[key.vendor]
        # Every spelling the vendor accepts is one operation (docs/policy.md, one parse): all checks
        # and the audit row see the canonical path; `raw_rest` (the agent's bytes) is forwarded.
        segments = vendor.canonical(req.method, segments)
        return Route(vendor, segments, raw_rest, {"path": join(segments)})
    except Denial as denial:
        return Refusal(denial, {})


@dataclass(frozen=True)
class Parsed:
    """The request after the vendor's one parse; `retry`: the Idempotency-Key check to reserve with."""

    vreq: VendorRequest
    retry: RetryCheck | None
    notes: RowNotes


def parse(req: ProxyRequest, where: Route, max_body_bytes: int | None, pepper: bytes) -> Parsed | Refusal:
    """The vendor's one parse of the body, with the body limit (bytes; the setting, else the
    vendor's), the no-body rule for GET/DELETE, the charset, and the Idempotency-Key header.

    `body_hash` is an HMAC-SHA256 of the body under the server's pepper (never the body itself).
    """
    vendor = where.vendor
    notes: RowNotes = {}
    try:
        limit = max_body_bytes or vendor.max_body_bytes
        if len(req.body) > limit:
            message = f"The request body is larger than {limit} bytes (KEYBRAKE_MAX_BODY_BYTES)."
            raise Denial("body_too_large", message)
        if too_many_values(req.body):  # bounds what every later step costs (core/body_values.py)
            raise Denial("body_too_large", TOO_MANY_VALUES)
        # One parse: a GET or DELETE body is never read as parameters, so it is refused outright.
        check_no_body(req.method, content_type(req), req.body)
        check_charset(req.header("content-type"), req.body)
        vreq = vendor.parse(req, where.segments)
        notes["request_summary"] = vendor.summary(vreq) or None
        notes["account_context"] = vreq.account_context
        idempotency_key = notes["idempotency_key"] = read_idempotency_key(req, vendor)
        if req.body:
            notes["body_hash"] = hmac.new(pepper, req.body, hashlib.sha256).hexdigest()
        fingerprint = vendor.fingerprint(vreq) if idempotency_key else None
    except Denial as denial:
        return Refusal(denial, notes)
    retry = (
        RetryCheck(idempotency_key, fingerprint, cached_statuses=vendor.idempotency_cached_statuses)
        if idempotency_key and fingerprint
        else None
    )
    return Parsed(vreq, retry, notes)


@dataclass(frozen=True)
class Admitted:
    """Past the checks that need no vendor data; `objects_needed`: vendor objects whose facts
    (proxy/facts.py) the scope check or the price depends on."""

    objects_needed: list[str]
    notes: RowNotes


def admit(policy: Policy, vendor: Vendor, vreq: VendorRequest) -> Admitted | Refusal:
    """Endpoint allowlist and guarded endpoints, the vendor's precheck, parameter rules: everything
    decided before any lookup made with the operator's secret."""
    notes: RowNotes = {}
    try:
        notes["endpoint"] = match_endpoint(policy, vendor, vreq)
        vendor.precheck(policy, vreq)
        check_param_rules(policy, vreq.params)
        need = vendor.objects_needed(vreq, policy.customer_allowlist is not None)
    except Denial as denial:
        return Refusal(denial, notes)
    return Admitted(need, notes)


def with_facts(vreq: VendorRequest, facts: dict[str, LedgerEntry]) -> VendorRequest:
    """The request with what the ledger or a lookup said about the objects it names (a copy:
    the shell keeps adding to its own dict)."""
    return replace(vreq, facts=dict(facts))


def with_scope(vreq: VendorRequest, scope: ScopeResult) -> VendorRequest:
    """The request with what the policy's scope check decided for it (e.g. a call's time limit)."""
    return replace(vreq, scope=scope.detail)


def request_cap_hit(policy: Policy, key_id: str, used: int, reserved: int, window_start_ms: int) -> CapHit | None:
    """The hourly request cap a vendor lookup would pass (one request more than used + reserved)."""
    cap = getattr(policy, REQUEST_CAP.field)
    if cap is None or used + reserved + 1 <= cap:
        return None
    return CapHit(
        "key", key_id, REQUEST_CAP.field, cap, used + reserved, 1, resets_at(REQUEST_CAP.window, window_start_ms), False
    )


@dataclass(frozen=True)
class Plan:
    """What the shell reserves and forwards: the estimate (µUSD), the counters to reserve against
    (caps, in lock order), the dedup and object-write guards, and the counter whose usage the
    audit row reports (`daily_counter`)."""

    vreq: VendorRequest
    estimate: Estimate
    caps: list[CapSpec]
    dedup: DedupCheck | None
    guard: ObjectGuard | None
    object_ref: str | None
    daily_counter: str | None
    notes: RowNotes


def plan(
    policy: Policy, key: KeyRecord, vendor: Vendor, vreq: VendorRequest, facts: dict[str, LedgerEntry], rates: Rates
) -> Plan | Refusal:
    """Scope check, estimate and caps. Refuses out of scope (vendor codes, e.g. customer_not_allowed),
    an unpriceable call without a per-call bound (unpriceable_request), an estimate over
    max_usd_per_call or beyond any one call (body_invalid)."""
    notes: RowNotes = {}
    try:
        scope = vendor.check_scope(policy, vreq)
        notes["customer_scope_id"] = scope.customer_scope_id
        if scope.detail is not None:
            vreq = with_scope(vreq, scope)
            notes["request_summary"] = vendor.summary(vreq) or None
        estimate = _estimate(policy, vendor, vreq, key, rates)
    except Denial as denial:
        return Refusal(denial, notes)
    notes["reserved_usd"] = estimate.amount
    notes["cost_kind"] = estimate.cost_kind if estimate.amount else "none"
    notes["cost_source"] = "estimate" if estimate.amount else "none"
    object_ref = vendor.object_ref(vreq)
    guard = ObjectGuard(object_ref, facts.get(object_ref), object_ref in facts) if object_ref else None
    # The audit row reports usage of the first USD cap the key has (daily, else total).
    daily = next((c.counter for c in KEY_CAPS if c.is_usd and getattr(policy, c.field) is not None), None)
    caps, dedup = caps_for(key, policy, estimate), dedup_check(policy, vendor, vreq)
    return Plan(vreq, estimate, caps, dedup, guard, object_ref, daily, notes)


def _estimate(policy: Policy, vendor: Vendor, vreq: VendorRequest, key: KeyRecord, rates: Rates) -> Estimate:
    estimate = vendor.estimate(vreq, rates)
    if estimate.pricing == "unpriceable":
        # Reserving the per-call bound stands in for the unknown amount; a bound of $0 cannot
        # (the call may move money), so it refuses exactly like no bound at all.
        if not policy.max_usd_per_call:
            raise Denial(
                "unpriceable_request",
                f"{vreq.method} {join(vreq.path)} may move money that cannot be priced before the call, "
                "and this key has no max_usd_per_call to reserve in its place (the operator can set one). "
                "Do not retry.",
            )
        estimate = replace(estimate, amount=policy.max_usd_per_call)  # its points bound stays
    check_estimate_bounds(estimate, vendor.name)
    check_max_per_call(policy, estimate.amount, key.id)
    return estimate


def reserved_refusal(result: ReserveResult, object_ref: str | None) -> Denial | None:
    """After a reservation that passed every cap: another write on the same object in flight, or
    the first request with this Idempotency-Key still in flight (409 idempotency_in_flight)."""
    if result.object_busy is not None:
        # Facts about the object may be changing under this request (an update of its amount, a
        # confirm authorising it): it goes only once that write is answered.
        return Denial(
            "idempotency_in_flight",
            f"Another request is acting on {object_ref} ({result.object_busy}); retry in a second (this "
            "one is priced again then).",
        )
    if result.retry_of is not None and result.retry_of.verdict == "in_flight":
        return Denial(
            "idempotency_in_flight",
            f"The first request with this Idempotency-Key ({result.retry_of.id}) is still in flight; "
            "retry in a second with the same key.",
        )
    return None


def upstream_request(
    req: ProxyRequest, where: Route, vreq: VendorRequest, secret: bytes, base_url: str, key_id: str
) -> UpstreamRequest | Refusal:
    """The vendor request: the agent's path and query under the credential's base URL, the
    forwarded headers plus the vendor's auth headers for `secret`, the body as the vendor sends it.
    Refuses (nothing sent) when the vendor cannot place the request for this credential."""
    vendor = where.vendor
    try:
        path = vendor.upstream_path(vreq, where.raw_rest, secret, key_id)
    except Denial as denial:
        return Refusal(denial, {})
    url = base_url.rstrip("/") + path.decode("latin-1")
    if req.query:
        url += "?" + req.query.decode("latin-1")
    if credential_query := vendor.upstream_query(secret):
        url += ("&" if req.query else "?") + urlencode(credential_query)
    allowed = COMMON_FORWARDED_HEADERS | vendor.forwarded_headers
    headers = [(k, v) for k, v in req.headers if k in allowed]
    headers += vendor.upstream_headers(secret)
    headers.append(("accept-encoding", "identity"))
    return UpstreamRequest(req.method, url, headers, vendor.upstream_body(vreq, req.body))
