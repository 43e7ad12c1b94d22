"""The small protocol a vendor module implements; the proxy core knows vendors only by it.

Adding a vendor is one module implementing `Vendor` and declaring a `VendorSpec`
(vendors/registry.py), registered in `vendors/__init__.py` (docs/vendors.md).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from keybrake.core.errors import Denial
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.params import Params
from keybrake.core.paths import join
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest

Rates = Mapping[str, Decimal]  # lower-case currency → USD per major unit


@dataclass(frozen=True)
class VendorRequest:
    """A request after the vendor's one parse (docs/policy.md, one parse). Immutable: the
    pipeline adds what it learns with `dataclasses.replace`.

    `detail`: what the vendor's parse learnt beyond the parameters, a frozen dataclass of the
    vendor's own (e.g. `TwilioParse`), read only by that vendor. `facts`: what the pre-flight
    lookups taught about the objects the request names (`objects_needed`), by object id.
    `scope`: what the vendor's `check_scope` decided (`ScopeResult.detail`), None before it.
    """

    method: str
    path: tuple[str, ...]  # normalised segments, without the /{vendor} prefix
    params: Params
    account_context: str | None = None
    detail: object = None
    facts: Mapping[str, LedgerEntry] = field(default_factory=lambda: MappingProxyType({}))
    scope: object = None

    def scoped(self, result: ScopeResult) -> VendorRequest:
        """This request with the scope decisions of `result` (unchanged when it has none)."""
        return replace(self, scope=result.detail) if result.detail is not None else self


@dataclass(frozen=True)
class Estimate:
    pricing: str  # free | priced | unpriceable
    amount: int  # micro-USD, upper bound for priced
    cost_kind: str
    currency: str | None = None
    sends: int = 0  # messages or email recipients the vendor bills (daily_send_cap)
    points: int = 0  # the most cost points the call can use (daily_graphql_cost_points), reserved
    minor: int | None = None  # the amount in the currency's minor unit, when priced from one


@dataclass(frozen=True)
class VendorCost:
    """What a definite vendor answer (< 500) says the call cost."""

    cost_usd: int
    cost_source: str  # response | estimate | flat_rate | none
    cost_kind: str
    keep_reservation: bool = False  # the outcome is not final (e.g. requires_action)
    vendor_object_id: str | None = None
    count: ObjectCount | None = None  # what the call counts for the object it acted on (once per object)
    points: int | None = None  # cost points the answer reports (None: keep the reserved bound)


@dataclass(frozen=True)
class ScopeResult:
    """What `check_scope` decided: the customer the request acts for (audited), and `detail`,
    the vendor's own typed decisions (e.g. a Twilio call's time limit), which the pipeline sets
    as `VendorRequest.scope` before the estimate (None: nothing to add)."""

    customer_scope_id: str | None = None
    detail: object = None


@dataclass(frozen=True)
class ValidatedSecret:
    blob: bytes  # what gets sealed
    hint: str  # e.g. sk_live_…abcd
    livemode: bool | None


@dataclass(frozen=True)
class Rendered:
    body: dict[str, Any]
    headers: dict[str, str]


class Vendor(Protocol):
    name: str
    default_base_url: str
    upstream_hosts: tuple[str, ...]  # exact names or "*.suffix"
    forwarded_headers: frozenset[str]  # lower-case, in addition to the common ones
    policy_fields: frozenset[str]  # the policy fields that mean something for this vendor
    guarded: tuple[EndpointPattern, ...]
    # Endpoints whose spelling decides a price or scope, and free ones: case variants refused (check_path_spelling).
    money_moving: tuple[EndpointPattern, ...]
    free: tuple[EndpointPattern, ...]
    max_body_bytes: int  # default request body limit (KEYBRAKE_MAX_BODY_BYTES overrides)
    # Retry key: its header (lower-case), longest length, the non-2xx answers the vendor replays to a retry.
    idempotency_header: str
    idempotency_key_max_length: int
    idempotency_cached_statuses: frozenset[int]
    replays_retries: bool  # a retry under the idempotency header gets the first outcome (safe after a timeout)
    reconcile_interval_s: float | None  # s between reconciliation passes (None: KEYBRAKE_RECONCILE_INTERVAL)
    vault_key_header: str | None  # lower-case; the agent's key may come in it too (None: no such header)
    trailing_slash: bool  # a path's one trailing '/' is ignored (the vendor's router does); else refused

    def canonical(self, method: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """The one spelling of the operation `path` names, used by every check and the audit row.

        Every spelling the vendor accepts for one operation (Twilio: `.json`, `.xml`, no
        extension) maps to the same segments; a spelling that cannot be classified with
        certainty raises a 400 `path_invalid` Denial. What is forwarded stays the agent's bytes.
        """

    def pattern_problem(self, pattern: EndpointPattern) -> str | None:
        """Why an `allowed_endpoints` pattern can never match a canonical path (None: it can)."""

    def validate_secret(self, secret: Any) -> ValidatedSecret: ...
    def policy_problem(self, policy: Mapping[str, Any]) -> tuple[str, str] | None:
        """(field, message) when a stored policy sets one of the vendor's fields that cannot take
        effect as given (the admin API refuses it, 422), else None."""

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest: ...
    def precheck(self, policy: Policy, vreq: VendorRequest) -> None:
        """Scope checks that need no vendor data (account context, a customer the request names):
        run before any lookup made with the operator's secret. Raises a Denial."""

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult: ...
    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate: ...
    def summary(self, vreq: VendorRequest) -> dict[str, Any]: ...
    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]: ...
    def upstream_path(self, vreq: VendorRequest, raw_path: bytes, secret: bytes, key_id: str) -> bytes:
        """The path to send upstream; raises a Denial if it names what the credential may not reach."""

    def upstream_query(self, secret: bytes) -> list[tuple[str, str]]: ...  # credential query parameters (rare)
    def upstream_body(self, vreq: VendorRequest, body: bytes) -> bytes: ...  # agent's bytes unless a policy sets one
    def credential_rejected(self, status: int, doc: Any) -> bool:
        """Whether this answer means the vendor refused the operator's secret (docs/policy.md, settlement)."""

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        """What the call cost, from a definite answer (< 500); `doc` is its parsed JSON or None."""

    def objects_needed(self, vreq: VendorRequest, need_customer: bool) -> list[str]: ...  # ids price/scope need
    def object_ref(self, vreq: VendorRequest) -> str | None:
        """The vendor object a write acts on, if any: one write per object is in flight at a time."""

    def lookup(
        self, object_id: str, account_context: str | None, secret: bytes
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """Path and extra headers of the GET that reads an object (pre-flight, reconciliation), or None."""

    def ledger_entries(self, doc: Any, account_context: str | None) -> list[LedgerEntry]:
        """Facts an answer teaches about vendor objects."""

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        """The final cost of a call from its object fetched later, or None while it is not final.

        `related`: the answers of `related_lookups` (e.g. a Twilio call's child legs)."""

    def related_lookups(self, object_id: str, secret: bytes) -> list[str]:
        """Paths (with query) of further GETs whose answers reconciliation needs with the object's."""

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        """A hash identifying the request for Idempotency-Key retries; None if the vendor has none."""

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        """A hash of what makes two POSTs the same send (dedup_window_seconds); None: not deduplicated."""

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """Replace secret-bearing fields in `doc` in place; return their names."""

    def request_id(self, headers: dict[str, str]) -> str | None: ...
    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered: ...


REDACTED = "[redacted by keybrake]"
# The policy fields every vendor's requests can be checked against (caps, allowlist, parameter
# rules, dedup, approval); a vendor's `policy_fields` are these and its own (docs/policy.md).
CORE_POLICY_FIELDS = frozenset(
    "allowed_endpoints daily_usd_cap dedup_window_seconds max_requests_per_hour max_usd_per_call param_rules"
    " total_usd_cap approval_above_usd approval_endpoints approval_timeout_seconds".split()
)
COMMON_FORWARDED_HEADERS = frozenset({"content-type", "accept", "accept-language", "user-agent"})


def canonical_fingerprint(vreq: VendorRequest) -> str:
    """Method, path, account context and the sorted parameters, hashed."""
    h = hashlib.sha256()
    h.update(f"{vreq.method} /{'/'.join(vreq.path)} {vreq.account_context or ''}".encode())
    for name, values in sorted(vreq.params.values.items()):
        h.update(b"\0" + name.encode() + b"=" + b"\1".join(v.encode() for v in values))
    return h.hexdigest()


def keybrake_code_doc(code: str) -> str:
    """Where a Keybrake error code is explained (Twilio's `more_info`)."""
    return f"{ERRORS_DOC}#{code}"


ERRORS_DOC = "https://github.com/keybrake/keybrake/blob/main/docs/errors.md"


def generic_denial(denial: Denial, keybrake: dict[str, Any]) -> Rendered:
    """The shape for unknown vendors and requests whose vendor cannot be told."""
    error = {"type": "keybrake_error", "code": denial.code, "message": denial.message, "keybrake": keybrake}
    return Rendered({"error": error}, {})


# The memo of accepted spellings (`Vendor.check_spelling`) is bounded: a path longer than
# _SPELLED_PATH_MAX characters or _SPELLED_SEGMENTS segments is never remembered (a flood of 15 KB
# paths once held ~64 MiB per vendor); the memo is cleared past _SPELLED_BYTES (estimated).
_SPELLED_MAX = 4096
_SPELLED_PATH_MAX = 256  # characters, segments together
_SPELLED_SEGMENTS = 12
_SPELLED_BYTES = 2 << 20


def spelled_cost(path: tuple[str, ...]) -> int:
    """Estimated bytes one memo entry for `path` holds: its characters, a string object per
    segment, the tuple and the dict slot (an over-estimate for ASCII paths)."""
    return sum(len(seg) for seg in path) + 64 * len(path) + 160


@functools.lru_cache(maxsize=256)
def _folded(text: str) -> EndpointPattern:
    return parse_pattern(text, casefold=True)


def check_path_spelling(
    method: str,
    path: tuple[str, ...],
    *patterns: tuple[EndpointPattern, ...],
    guarded: tuple[EndpointPattern, ...] = (),
) -> None:
    """Refuse a path that names a classified endpoint in other letter case (400 `path_invalid`).

    `patterns` are the endpoints whose exact spelling decides how a request is classified: the
    vendor's money-moving ones and its free writes (GET-only patterns are skipped: a read is free
    in any spelling, and guarded matching is case-insensitive anyway). Whether a vendor routes
    `/v1/Charges` like `/v1/charges` is not documented by Stripe, Resend or Twilio, so such a
    case variant is refused rather than guessed at. Wildcard segments (ids) match in any case.
    A path matching `guarded` (case-insensitive) is left to the guarded check, which refuses it
    unless the key names it literally (and a literal pattern matches only the exact spelling).
    """
    if any(g.matches(method, path) for g in guarded):
        return
    candidates = [p for group in patterns for p in group if p.methods is None or p.methods != {"GET"}]
    if any(p.matches(method, path) for p in candidates):
        return
    for p in candidates:
        if _folded(p.text).matches(method, path):
            raise Denial(
                "path_invalid",
                f"Request path refused: {method} {join(path)[:200]} differs only in letter case from {p.text}, an "
                "endpoint Keybrake prices and scopes by its exact spelling; send the vendor's exact spelling. "
                "Nothing was sent. Do not retry unchanged.",
            )


class VendorDefaults:
    """What most vendors do; a vendor module overrides only where it differs."""

    idempotency_header = "idempotency-key"
    idempotency_key_max_length = 255
    idempotency_cached_statuses: frozenset[int] = frozenset()
    replays_retries = False
    reconcile_interval_s: float | None = None
    vault_key_header: str | None = None
    trailing_slash = False

    guarded: tuple[EndpointPattern, ...] = ()
    money_moving: tuple[EndpointPattern, ...] = ()
    free: tuple[EndpointPattern, ...] = ()

    # (method, path) pairs `check_spelling` accepted (a fact of the vendor's constant patterns), each
    # checked once; bounded: short paths only, cleared past _SPELLED_MAX entries or _SPELLED_BYTES.
    _spelled: dict[tuple[str, tuple[str, ...]], None] | None = None
    _spelled_bytes = 0

    def canonical(self, method: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """Identity: one spelling per operation; case variants of classified endpoints are refused."""
        self.check_spelling(method, path)
        return path

    def check_spelling(self, method: str, path: tuple[str, ...]) -> None:
        """`check_path_spelling` against this vendor's money-moving, free and guarded patterns
        (raises its Denial); an accepted (method, path) is remembered."""
        spelled = self._spelled
        if spelled is None:
            spelled = self._spelled = {}
        elif (method, path) in spelled:
            return
        check_path_spelling(method, path, self.money_moving, self.free, guarded=self.guarded)
        if len(path) > _SPELLED_SEGMENTS or sum(len(seg) for seg in path) > _SPELLED_PATH_MAX:
            return  # checked, not remembered
        cost = spelled_cost(path)
        if len(spelled) >= _SPELLED_MAX or self._spelled_bytes + cost > _SPELLED_BYTES:
            spelled.clear()
            self._spelled_bytes = 0
        spelled[(method, path)] = None
        self._spelled_bytes += cost

    def pattern_problem(self, pattern: EndpointPattern) -> str | None:
        return None

    def policy_problem(self, policy: Mapping[str, Any]) -> tuple[str, str] | None:
        return None

    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {secret.decode()}")]

    def upstream_path(self, vreq: VendorRequest, raw_path: bytes, secret: bytes, key_id: str) -> bytes:
        return raw_path

    def upstream_query(self, secret: bytes) -> list[tuple[str, str]]:
        return []

    def upstream_body(self, vreq: VendorRequest, body: bytes) -> bytes:
        return body

    def credential_rejected(self, status: int, doc: Any) -> bool:
        return status == 401

    def objects_needed(self, vreq: VendorRequest, need_customer: bool) -> list[str]:
        return []

    def precheck(self, policy: Policy, vreq: VendorRequest) -> None:
        return None

    def lookup(
        self, object_id: str, account_context: str | None, secret: bytes
    ) -> tuple[str, list[tuple[str, str]]] | None:
        return None

    def ledger_entries(self, doc: Any, account_context: str | None) -> list[LedgerEntry]:
        return []

    def related_lookups(self, object_id: str, secret: bytes) -> list[str]:
        return []

    def object_ref(self, vreq: VendorRequest) -> str | None:
        return None


def answer_text(doc: Any, name: str) -> str | None:
    """A string field of a vendor answer, or None: answers are validated before they are trusted
    (a field of the wrong type is treated as absent, never compared or hashed as it is)."""
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def content_type(req: ProxyRequest) -> str:
    """The request's media type, lower-cased, without parameters ("" when absent)."""
    return (req.header("content-type") or "").split(";")[0].strip().lower()


def redact_fields(doc: Any, names: frozenset[str]) -> list[str]:
    """Replace every non-empty string field called one of `names`, at any depth; return the names found."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in names and isinstance(v, str) and v:
                    node[k] = REDACTED
                    found.add(k)
                else:
                    walk(v)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return sorted(found)


def retry_after(denial: Denial) -> dict[str, str]:
    """`Retry-After: 1` on denials a retry can get past (Twilio and Resend shapes)."""
    return {"Retry-After": "1"} if denial.retryable else {}
