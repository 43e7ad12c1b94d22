"""Every way Keybrake refuses or fails a proxied request, written down once.

Each code maps to exactly one HTTP status and one audit verdict (docs/errors.md). Vendors only
*render* a `Denial` in their own error shape; they never invent codes.

    Denial
    ├── 400 key_ambiguous, path_invalid, param_ambiguous, body_invalid, header_invalid
    ├── 401 key_missing, key_invalid, key_revoked, key_expired
    ├── 403 vendor_mismatch, endpoint_not_allowed, endpoint_guarded, scope_violation,
    │       param_not_allowed, amount_over_limit, currency_not_supported, unpriceable_request,
    │       approval_denied, approval_timeout, approval_queue_full
    ├── 405 method_not_supported
    ├── 409 idempotency_in_flight, duplicate_outcome_unknown
    ├── 413 body_too_large
    ├── 415 unsupported_media_type
    ├── 429 spend_cap_exceeded, request_cap_exceeded, send_cap_exceeded   (verdict cap_exceeded)
    ├── 502 upstream_unreachable, upstream_forbidden, upstream_credential_rejected
    ├── 503 credential_unavailable, enforcement_unavailable
    └── 504 upstream_timeout                                               (verdict outcome_unknown)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Order matters: vendors whose errors carry an integer code (Twilio, vendors/twilio_errors.py)
# number them by HTTP status × 1000 + 1-based position among the codes sharing that status, in
# this order (docs/errors.md).
CODES: tuple[tuple[str, int], ...] = (
    ("key_missing", 401),
    ("key_invalid", 401),
    ("key_revoked", 401),
    ("key_expired", 401),
    ("key_ambiguous", 400),
    ("path_invalid", 400),
    ("param_ambiguous", 400),
    ("body_invalid", 400),
    ("header_invalid", 400),
    ("method_not_supported", 405),
    ("body_too_large", 413),
    ("unsupported_media_type", 415),
    ("vendor_mismatch", 403),
    ("endpoint_not_allowed", 403),
    ("endpoint_guarded", 403),
    ("scope_violation", 403),
    ("param_not_allowed", 403),
    ("amount_over_limit", 403),
    ("currency_not_supported", 403),
    ("unpriceable_request", 403),
    ("approval_denied", 403),
    ("approval_timeout", 403),
    ("approval_queue_full", 403),
    ("idempotency_in_flight", 409),
    ("duplicate_outcome_unknown", 409),
    ("spend_cap_exceeded", 429),
    ("request_cap_exceeded", 429),
    ("send_cap_exceeded", 429),
    ("upstream_unreachable", 502),
    ("upstream_forbidden", 502),
    ("upstream_credential_rejected", 502),
    ("upstream_timeout", 504),
    ("credential_unavailable", 503),
    ("enforcement_unavailable", 503),
)
STATUS: dict[str, int] = dict(CODES)

# Codes after which a retry of the same request can succeed without anyone changing anything.
RETRYABLE = frozenset({"idempotency_in_flight", "upstream_unreachable", "enforcement_unavailable", "upstream_timeout"})
# Codes of a call held for a person's approval (docs/approvals.md) after which asking again —
# sending the same request, which is held again — can help: no one decided, or the call was
# never held. Never RETRYABLE: it needs a person.
ASK_AGAIN = frozenset({"approval_timeout", "approval_queue_full"})
# The codes of a call that needed a person's approval: their answers say `ask_again`.
APPROVAL_CODES = frozenset({"approval_denied", *ASK_AGAIN})
# Of those, codes after which the vendor may have acted: a retry is safe (retryable) only where the
# vendor replays a retry sent under the same idempotency key and the request carried one
# (`Denial.replayable`); anywhere else a retry may act twice (a second payment, a second message).
OUTCOME_UNKNOWN = frozenset({"upstream_timeout"})


def verdict_for(code: str) -> str:
    """The audit verdict a denial with this code is recorded under."""
    if code in ("spend_cap_exceeded", "request_cap_exceeded", "send_cap_exceeded"):
        return "cap_exceeded"
    if code in ("upstream_unreachable", "upstream_forbidden", "upstream_credential_rejected"):
        return "upstream_error"
    if code == "upstream_timeout":
        return "outcome_unknown"
    return f"denied_{code}"


@dataclass(frozen=True)
class CapHit:
    """Which cap refused a request, for the 429 body and headers."""

    scope: str  # "key" | "budget"
    id: str
    name: str  # daily_usd_cap, total_usd_cap, max_requests_per_hour …
    limit: int  # micro-USD for USD caps, a count otherwise
    used: int
    requested: int
    resets_at_ms: int | None
    is_usd: bool

    def as_json(self) -> dict[str, Any]:
        from keybrake.core.money import to_json_number
        from keybrake.core.timefmt import rfc3339

        body: dict[str, Any] = {"scope": self.scope, "id": self.id, "name": self.name}
        if self.is_usd:
            body["limit_usd"] = to_json_number(self.limit)
            body["used_usd"] = to_json_number(self.used)
            body["requested_usd"] = to_json_number(self.requested)
        else:
            body["limit"] = self.limit
            body["used"] = self.used
            body["requested"] = self.requested
        body["resets_at"] = rfc3339(self.resets_at_ms) if self.resets_at_ms is not None else None
        return body


@dataclass
class Denial(Exception):
    """A request Keybrake refuses. `message` must say what, by which rule, and if retry helps."""

    code: str
    message: str
    cap: CapHit | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    exposed_prefix: str | None = None  # a real vendor secret was sent as a key: its prefix only
    # Facts for the operator's audit row only, never rendered to the agent (e.g. whose object it was).
    detail: str | None = None
    # For an OUTCOME_UNKNOWN code: the request carried the idempotency header of a vendor that
    # replays a retry sent under it (so retrying cannot act twice).
    replayable: bool = False

    def __post_init__(self) -> None:
        if self.code not in STATUS:
            raise ValueError(f"unknown denial code {self.code!r}")
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return STATUS[self.code]

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again can succeed without anyone changing anything and
        without acting twice: the code's advice (RETRYABLE), and for a code after which the vendor
        may have acted (OUTCOME_UNKNOWN) only when the retry is replayed (`replayable`)."""
        return self.code in RETRYABLE and (self.code not in OUTCOME_UNKNOWN or self.replayable)

    @property
    def verdict(self) -> str:
        return verdict_for(self.code)


class EnforcementUnavailable(Exception):
    """The store could not be reached or failed: enforcement is unsure, so nothing is forwarded.

    `commit_unknown`: the failure hit COMMIT itself (or the request's deadline passed while the
    call ran), so the transaction may have landed. `pending`: the call still running past the
    deadline, when there is one — whatever it commits must be undone once it finishes.
    `transient`: the store was busy or unreachable (no connection in time, a timeout, a lost
    connection), not refusing this particular call: trying again later may succeed.
    `shed`: a denial's audit row refused because its queue class is full (store/gate.py): the
    caller counts and logs it (never silently dropped).
    """

    def __init__(
        self,
        message: str,
        *,
        commit_unknown: bool = False,
        pending: Any = None,
        transient: bool = False,
        shed: bool = False,
    ) -> None:
        super().__init__(message)
        self.shed = shed
        self.commit_unknown = commit_unknown
        self.pending = pending
        self.transient = transient
