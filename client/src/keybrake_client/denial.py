"""Is this vendor SDK exception a Keybrake denial, and does retrying help?

Keybrake answers a refused request in the calling vendor's own error shape (docs/errors.md), so
the agent's SDK raises its normal exception. `denial(exc)` reads the Keybrake code back out of
any of them: stripe.StripeError (`error.code`), twilio's TwilioRestException
(`details.keybrake_code`, or the integer code), resend's ResendError (`name`), postmarker's
ClientError (`KeybrakeCode`, read from the HTTP error it was raised from), sendgrid's HTTPError
(`id`), segment's APIError (`code`), ShopifyAPI's REST errors (`errors[0].extensions.code`), and
httpx / requests HTTP errors carrying any of these bodies or Keybrake's own
`{"error": {"type": "keybrake_error", "code"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Kind = Literal[
    "auth", "revoked", "expired", "invalid", "scope", "cap", "duplicate", "transient", "upstream", "approval"
]

# code: (HTTP status, kind, retryable). Order as the server's table (Twilio's integer codes are
# status × 1000 + the code's position among those sharing its status).
CODES: dict[str, tuple[int, Kind, bool]] = {
    "key_missing": (401, "auth", False),
    "key_invalid": (401, "auth", False),
    "key_revoked": (401, "revoked", False),
    "key_expired": (401, "expired", False),
    "key_ambiguous": (400, "invalid", False),
    "path_invalid": (400, "invalid", False),
    "param_ambiguous": (400, "invalid", False),
    "body_invalid": (400, "invalid", False),
    "header_invalid": (400, "invalid", False),
    "method_not_supported": (405, "invalid", False),
    "body_too_large": (413, "invalid", False),
    "unsupported_media_type": (415, "invalid", False),
    "vendor_mismatch": (403, "scope", False),
    "endpoint_not_allowed": (403, "scope", False),
    "endpoint_guarded": (403, "scope", False),
    "scope_violation": (403, "scope", False),
    "param_not_allowed": (403, "scope", False),
    "amount_over_limit": (403, "cap", False),
    "currency_not_supported": (403, "scope", False),
    "unpriceable_request": (403, "scope", False),
    "approval_denied": (403, "approval", False),
    "approval_timeout": (403, "approval", False),
    "approval_queue_full": (403, "approval", False),
    "idempotency_in_flight": (409, "transient", True),
    "duplicate_outcome_unknown": (409, "duplicate", False),
    "spend_cap_exceeded": (429, "cap", False),
    "request_cap_exceeded": (429, "cap", False),
    "send_cap_exceeded": (429, "cap", False),
    "upstream_unreachable": (502, "transient", True),
    "upstream_forbidden": (502, "upstream", False),
    "upstream_credential_rejected": (502, "upstream", False),
    "upstream_timeout": (504, "transient", True),
    "credential_unavailable": (503, "upstream", False),
    "enforcement_unavailable": (503, "transient", True),
}
# Answers of the listener in front of the proxy (plain Keybrake shape, not audited).
LISTENER_CODES: dict[str, tuple[int, Kind, bool]] = {
    "header_too_large": (431, "invalid", False),
    "too_many_connections": (503, "transient", True),
}
_ALL = {**CODES, **LISTENER_CODES}


def _twilio_numbers() -> dict[int, str]:
    seen: dict[int, int] = {}
    out: dict[int, str] = {}
    for code, (status, _, _) in CODES.items():
        seen[status] = seen.get(status, 0) + 1
        out[status * 1000 + seen[status]] = code
    return out


TWILIO_CODES = _twilio_numbers()


@dataclass(frozen=True)
class Denial:
    """A request Keybrake refused or failed, read from the SDK's exception.

    `code`: Keybrake's code (docs/errors.md); `kind`: "cap" (a USD, request or send cap, or
    `max_usd_per_call`), "scope" (endpoint, customer, recipient, parameter rules), "revoked",
    "expired", "auth" (no or bad key), "invalid" (the request's form), "duplicate" (a dedup'd
    send of unknown outcome), "transient" (in flight, store or vendor unreachable) or "upstream"
    (the operator's credential or upstream settings) or "approval" (a call held for a person's
    approval was denied, not decided in time, or not held: `ask_again` says whether sending it
    again, to be held again, can help); `retryable`: whether sending the same
    request again can succeed without anyone changing anything (for `upstream_timeout` only with
    the same Idempotency-Key); `status`: the HTTP status; `message`: Keybrake's explanation;
    `detail`: the `keybrake` object of the answer when the shape carries it (e.g. `cap` with
    `limit_usd`, `used_usd`, `resets_at`), else {}.
    """

    code: str
    kind: Kind
    retryable: bool
    status: int
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ask_again(self) -> bool:
        """For a held call: True when asking again can help (no one decided in time, or too many
        calls were already waiting); False when a person denied it. False for every other code."""
        return self.code in ASK_AGAIN

    @property
    def cap(self) -> Mapping[str, Any] | None:
        """The cap that refused the request (`scope`, `id`, `name`, limits), when there is one."""
        cap = self.detail.get("cap")
        return cap if isinstance(cap, Mapping) else None


def classify(code: str, message: str = "", detail: Mapping[str, Any] | None = None) -> Denial | None:
    """The `Denial` for a Keybrake code, or None for a code Keybrake does not answer with."""
    known = _ALL.get(code)
    if known is None:
        return None
    status, kind, retryable = known
    return Denial(code, kind, retryable, status, message, detail or {})


# Approval codes after which asking again can help (the server's keybrake.core.errors.ASK_AGAIN).
ASK_AGAIN = frozenset({"approval_timeout", "approval_queue_full"})
# Codes after which the vendor may have acted: a retry is safe only under the same
# Idempotency-Key, and only at a vendor that replays a retry sent under it (the server's
# keybrake.core.errors.OUTCOME_UNKNOWN).
OUTCOME_UNKNOWN = frozenset({"upstream_timeout"})
# SDK exceptions of vendors that take no Idempotency-Key (a retry is a second send).
_NO_IDEMPOTENCY = ("twilio.", "postmarker.", "python_http_client.", "segment.", "pyactiveresource.", "shopify.")


def denial(exc: BaseException) -> Denial | None:
    """The Keybrake denial `exc` carries (or the exception it was raised from), else None: a
    vendor's own error, a network error, or anything else is None. A code after which the vendor
    may have acted (`upstream_timeout`) is retryable only when a retry is replayed — the vendor
    replays retries and the request carried its idempotency header — as the server decided for
    that request (`keybrake.retryable` in the answer). Where the answer's shape does not carry
    it: never from the SDK of a vendor that takes no Idempotency-Key (Twilio, Postmark, SendGrid,
    Segment, ShopifyAPI), from resend-python only when the answer carried `Retry-After`, and from a
    raw HTTP error only when its request carried an Idempotency-Key."""
    for e in _chain(exc):
        found = _from_exception(e)
        if found is not None:
            if found.retryable and found.code in OUTCOME_UNKNOWN:
                said = found.detail.get("retryable")
                if not (said if isinstance(said, bool) else _replayable(e)):
                    return replace(found, retryable=False)
            return found
    return None


def _replayable(e: BaseException) -> bool:
    """Whether sending the request that raised `e` again is replayed by its vendor."""
    if type(e).__module__.startswith(_NO_IDEMPOTENCY):
        return False
    if type(e).__module__.startswith("resend"):
        # A ResendError keeps the answer's headers, not its `keybrake` object: the server sends
        # `Retry-After` with upstream_timeout exactly when a retry is replayed (docs/errors.md).
        headers = getattr(e, "headers", None)
        return isinstance(headers, Mapping) and any(str(k).lower() == "retry-after" for k in headers)
    if getattr(e, "json_body", None) is not None:
        return True  # stripe: the vendor replays a retry under the same Idempotency-Key
    try:
        headers = e.request.headers  # type: ignore[attr-defined]  # httpx.Request, requests.PreparedRequest
    except Exception:  # no request (httpx raises RuntimeError, requests may hold None)
        return False
    return bool(headers.get("Idempotency-Key"))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 8:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _from_exception(e: BaseException) -> Denial | None:
    # stripe.StripeError: the parsed body
    body = getattr(e, "json_body", None)
    if isinstance(body, Mapping):
        return from_body(body)
    # twilio.base.exceptions.TwilioRestException: details and the integer code
    details = getattr(e, "details", None)
    if isinstance(details, Mapping) and isinstance(details.get("keybrake_code"), str):
        return classify(details["keybrake_code"], str(getattr(e, "msg", "")), _detail(details))
    code = getattr(e, "code", None)
    if type(e).__name__ == "TwilioRestException" and isinstance(code, int) and code in TWILIO_CODES:
        return classify(TWILIO_CODES[code], str(getattr(e, "msg", "")))
    # resend.exceptions.ResendError: `error_type` is the answer's `name`
    error_type = getattr(e, "error_type", None)
    if isinstance(error_type, str) and type(e).__module__.startswith("resend"):
        return classify(error_type, str(getattr(e, "message", "")))
    # segment.analytics.request.APIError(status, code, message)
    if type(e).__name__ == "APIError" and isinstance(code, str) and isinstance(getattr(e, "status", None), int):
        return classify(code, str(getattr(e, "message", "")))
    # python_http_client.HTTPError (sendgrid): raw body bytes
    raw = getattr(e, "body", None)
    if isinstance(raw, bytes | str) and isinstance(getattr(e, "status_code", None), int):
        return from_body(_json(raw))
    # httpx.HTTPStatusError, requests.HTTPError, pyactiveresource errors: a response object
    resp = getattr(e, "response", None)
    if resp is not None:
        return from_body(_json(_response_body(resp)))
    return None


def _response_body(resp: Any) -> Any:
    for attr in ("content", "body"):  # httpx / requests; pyactiveresource's Response
        try:
            value = getattr(resp, attr, None)
        except Exception:  # an unread streamed httpx response raises on .content
            return None
        if isinstance(value, bytes | str):
            return value
    return None


def _json(raw: Any) -> Any:
    if not isinstance(raw, bytes | str) or not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _detail(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    inner = value.get("keybrake")
    if isinstance(inner, Mapping):
        return inner
    return {k: v for k, v in value.items() if k != "keybrake_code"}


def from_body(body: Any) -> Denial | None:
    """The `Denial` in a parsed error body of any vendor shape Keybrake renders, else None."""
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, Mapping) and isinstance(err.get("code"), str):  # Stripe, Keybrake's own
        if err.get("type") == "keybrake_error" or "keybrake" in err:
            return classify(err["code"], str(err.get("message", "")), _detail(err))
    details = body.get("details")
    if isinstance(details, Mapping) and isinstance(details.get("keybrake_code"), str):  # Twilio
        return classify(details["keybrake_code"], str(body.get("message", "")), _detail(details))
    if isinstance(body.get("KeybrakeCode"), str):  # Postmark
        return classify(body["KeybrakeCode"], str(body.get("Message", "")), _detail(body))
    if isinstance(body.get("name"), str) and "statusCode" in body:  # Resend
        return classify(body["name"], str(body.get("message", "")), _detail(body))
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        ext = first.get("extensions")
        if isinstance(ext, Mapping) and isinstance(ext.get("code"), str):  # Shopify
            return classify(ext["code"], str(first.get("message", "")), _detail(ext))
        if isinstance(body.get("id"), str) and first.get("help") == body["id"]:  # SendGrid
            return classify(body["id"], str(first.get("message", "")), _detail(body))
    if isinstance(body.get("code"), str) and set(body) <= {"code", "message", "keybrake"}:  # Segment
        return classify(body["code"], str(body.get("message", "")), _detail(body))
    return None
