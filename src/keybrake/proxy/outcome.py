"""The outcome after the vendor's answer, as pure functions: what the call cost, how the
reservation settles, what the agent sees. No I/O: the shell (proxy/pipeline.py) settles and
answers with what these return.

Settlement meanings (docs/policy.md, settlement): nothing sent → release, no request counted;
the vendor refused the operator's secret → release, the request counted (it reached the vendor);
sent without a definite answer (a timeout, a 5xx) → `outcome_unknown`, the reservation kept
until reconciled; a definite answer (< 500) → what the vendor says it cost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from keybrake.core.errors import Denial
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.upstream import UpstreamForbidden, UpstreamOutcomeUnknown, UpstreamResponse, UpstreamUnreachable
from keybrake.logs import redact
from keybrake.proxy.decide import RowNotes
from keybrake.proxy.decisions import json_or_none, unknown_outcome, vendor_keeps
from keybrake.store.base import EarlierRequest, EarlierSettlement, Settlement
from keybrake.vendors.base import Estimate, Rates, Vendor, VendorRequest

# Settlements that do not depend on the answer: nothing sent (release, no request counted),
# the vendor refused the operator's secret (release; the request did reach it).
NOTHING_SENT = Settlement("upstream_error", 0, "none", "none", keep_reservation=False, forwarded=False)
REFUSED_BY_VENDOR = Settlement("upstream_error", 0, "none", "none", keep_reservation=False, forwarded=True)
# Reserved, but past the request's deadline: never sent, the reservation released.
TOO_LATE = Settlement("denied_enforcement_unavailable", 0, "none", "none", keep_reservation=False, forwarded=False)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
        # Keybrake's server sets its own Date (two would reach the agent) and names no server.
        "date",
        "server",
        # Keybrake sends its own Server-Timing (keybrake, upstream): a vendor's is dropped, so no
        # vendor can spoof Keybrake's figures (docs/sdk-stripe.md, response headers).
        "server-timing",
    }
)


# What Keybrake's server (uvicorn with httptools) writes without refusing: a header name that is an
# RFC 9110 token, a value of field content (VCHAR / obs-text, SP and HTAB inside). A vendor header
# it would refuse (a control character, DEL, CR/LF, a non-latin-1 character, a name with a space or
# a colon) made it drop the agent's connection after the charge was settled: such a header is
# dropped instead, and the audit row's reason says so (names only, never a value).
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def passable(name: str, value: str) -> bool:
    """Whether a header (name, value: latin-1 text, the value without surrounding blanks) can be
    written to the agent: the name an RFC 9110 token, the value field content (no CR, LF, NUL,
    DEL or other control character but HTAB; nothing past U+00FF)."""
    return _TOKEN.fullmatch(name) is not None and _FIELD_VALUE.fullmatch(value) is not None


def passed_headers(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The vendor's answer headers the agent gets: hop-by-hop and x-keybrake-* removed, values
    stripped of surrounding blanks, and those Keybrake cannot write dropped. Returns (the headers
    passed, a description of each header dropped as unwritable: its name when that is a token,
    else "a header with an invalid name"; never a value)."""
    out: list[tuple[str, str]] = []
    dropped: list[str] = []
    for name, raw in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower.startswith("x-keybrake-"):
            continue
        value = raw.strip(" \t")
        if passable(name, value):
            out.append((name, value))
        else:
            dropped.append(lower[:64] if _TOKEN.fullmatch(name) else "a header with an invalid name")
    return out, dropped


def too_late() -> Denial:
    """The reservation came back after the request's deadline: refused, nothing forwarded (503)."""
    return Denial(
        "enforcement_unavailable",
        "Keybrake could not reserve this request within its deadline (KEYBRAKE_RESERVE_DEADLINE_MS); "
        "nothing was forwarded. Retry shortly.",
    )


def transport_failure(
    exc: UpstreamForbidden | UpstreamUnreachable | UpstreamOutcomeUnknown,
    vendor: Vendor,
    idempotency_key: str | None,
    reserved_usd: int,
    estimate: Estimate,
    *,
    honoured: bool,
) -> tuple[Denial, Settlement]:
    """The refusal and settlement for a send that got no answer (net/upstream.py: each exception
    has one settlement meaning). Forbidden or unreachable: nothing was sent, the reservation is
    released. Outcome unknown: it may have been carried out, the reservation (µUSD) is kept, and
    a retry is advised (`retryable`) only when it is replayed: the vendor replays retries
    (`replays_retries`), the request carried its idempotency header (`idempotency_key`) and the
    vendor honours it on this request's endpoint (`honoured`: its `fingerprint` is not None)."""
    vendor_name = vendor.name
    if isinstance(exc, UpstreamForbidden):
        message = (
            f"Refused to send the {vendor_name} credential: {exc}. Nothing was sent. Do not retry; the "
            "operator must check DNS or list the host in KEYBRAKE_UPSTREAM_HOSTS."
        )
        return Denial("upstream_forbidden", message), NOTHING_SENT
    if isinstance(exc, UpstreamUnreachable):
        message = (
            f"{vendor_name} could not be reached ({exc}); nothing was sent and nothing was charged. Retrying may help."
        )
        return Denial("upstream_unreachable", message), NOTHING_SENT
    header = "-".join(part.capitalize() for part in vendor.idempotency_header.split("-"))
    replayable = vendor.replays_retries and idempotency_key is not None and honoured
    if replayable:
        advice = f"a retry with the same {header} is safe: {vendor_name} answers it with the first outcome."
    elif vendor.replays_retries and idempotency_key is not None:
        advice = (
            f"{vendor_name} ignores the {header} on this endpoint, so a retry may act twice: check the outcome "
            f"with {vendor_name} before sending it again."
        )
    elif vendor.replays_retries:
        advice = (
            f"it carried no {header}, so a retry may act twice: check the outcome with {vendor_name} before "
            f"sending it again (and send an {header} next time)."
        )
    else:
        advice = (
            f"{vendor_name} does not replay retries, so a retry may act twice: check the outcome with "
            f"{vendor_name} before sending it again."
        )
    message = f"{vendor_name} did not answer ({exc}). The request may have been carried out; {advice}"
    return Denial("upstream_timeout", message, replayable=replayable), unknown_outcome(reserved_usd, estimate)


@dataclass(frozen=True)
class Outcome:
    """What a vendor answer means. `refusal` set: Keybrake answers instead of passing the answer
    on (the vendor refused the operator's credential; `credential_rejected` asks for the alert).
    Otherwise `status`, `headers` (hop-by-hop and x-keybrake-* removed) and `body` (redacted) go
    to the agent. `earlier`: a retry's answer settles the earlier outcome_unknown request;
    `ledger`: facts learnt about vendor objects; `count`: what the call counts for its object."""

    settlement: Settlement
    notes: RowNotes
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    refusal: Denial | None = None
    credential_rejected: bool = False
    earlier: EarlierSettlement | None = None
    count: ObjectCount | None = None
    ledger: list[LedgerEntry] = field(default_factory=list)


def outcome(
    vendor: Vendor,
    vreq: VendorRequest,
    estimate: Estimate,
    reserved_usd: int,
    retry_of: EarlierRequest | None,
    credential: str,
    resp: UpstreamResponse,
    rates: Rates,
) -> Outcome:
    """Settle to what the answer says the call cost (`reserved_usd`, costs: µUSD; `credential`
    names the operator's credential in the refusal; `retry_of`: the earlier request this one
    retries under the same Idempotency-Key, which reserved nothing)."""
    resp_headers = {k.lower(): v for k, v in resp.headers}
    notes: RowNotes = {"upstream_status": resp.status, "vendor_request_id": vendor.request_id(resp_headers)}
    doc = json_or_none(resp.body, resp_headers)
    if vendor.credential_rejected(resp.status, doc):
        # The operator's secret was refused: never pass the vendor's text (it may echo the key).
        refusal = Denial(
            "upstream_credential_rejected",
            f"The operator's credential '{credential}' was "
            f"refused by {vendor.name}. Do not retry; the operator must rotate it.",
        )
        return Outcome(REFUSED_BY_VENDOR, notes, resp.status, [], b"", refusal, credential_rejected=True)
    body = _redacted(vendor, vreq, doc, resp, notes)
    settlement = unknown_outcome(reserved_usd, estimate)
    if resp.status >= 500:
        notes["reason"] = f"{vendor.name} answered {resp.status}; the outcome is unknown and the reservation is kept"
    earlier: EarlierSettlement | None = None
    count: ObjectCount | None = None
    if resp.status < 500 and retry_of is not None:
        # A retry reserved nothing; its answer tells what the earlier request did (§3.1.4).
        settlement = Settlement("allowed", 0, "none", "none", keep_reservation=False, forwarded=True)
        if retry_of.verdict == "outcome_unknown" and vendor_keeps(resp.status, vendor):
            first = {k: v for k, v in resp_headers.items() if k != "idempotent-replayed"}
            c = vendor.cost(vreq, estimate, resp.status, first, doc, rates)
            earlier = EarlierSettlement(retry_of.id, c.cost_usd, c.cost_source, c.cost_kind, c.count)
    elif resp.status < 500:
        cost = vendor.cost(vreq, estimate, resp.status, resp_headers, doc, rates)
        notes["vendor_object_id"] = cost.vendor_object_id
        count = cost.count
        billed = resp.status < 300
        settlement = Settlement(
            "allowed", cost.cost_usd, cost.cost_source, cost.cost_kind, cost.keep_reservation, True, billed, cost.points
        )
    notes["status"] = resp.status
    # A replayed answer (`Idempotent-Replayed: true`) is the object as it was at the first call,
    # not as it is: it teaches nothing (found by the red-team run: a replay rolled an amount
    # back to $1 before a $9,000 confirm).
    replayed = resp_headers.get("idempotent-replayed", "").strip().lower() == "true"
    learnt = vendor.ledger_entries(doc, vreq.account_context) if resp.status < 300 and not replayed else []
    out, dropped = passed_headers(resp.headers)
    if dropped:
        names = ", ".join(sorted(set(dropped))[:10])
        why = f"dropped {len(dropped)} {vendor.name} answer header(s) Keybrake cannot pass on: {names}"
        notes["reason"] = f"{notes['reason']}; {why}" if notes.get("reason") else why
    return Outcome(settlement, notes, resp.status, out, body, earlier=earlier, count=count, ledger=learnt)


def _redacted(vendor: Vendor, vreq: VendorRequest, doc: object, resp: UpstreamResponse, notes: RowNotes) -> bytes:
    """The body the agent may see: secret-bearing fields removed, whatever the policy (docs/policy.md,
    guarded endpoints), and a 403's text stripped of any key the vendor echoed."""
    body = resp.body
    if doc is not None:
        redacted = vendor.redact(vreq, doc)  # edits `doc` in place, naming the fields it removed
        if redacted:
            notes["redacted_fields"] = redacted
            body = json.dumps(doc).encode()
    if resp.status == 403:
        # Other vendor 403s pass through, without any key text the vendor echoed.
        body = redact(body.decode("utf-8", "replace")).encode()
    return body
