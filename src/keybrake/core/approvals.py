"""Which calls wait for a person (docs/approvals.md), decided from plain data: no I/O, no clock.

A call needs approval when its estimate (µUSD) is above the key's `approval_above_usd` or the
`approval_above_usd` of any budget covering the key, or when it matches one of the key's
`approval_endpoints` patterns. It is decided after every other check has passed and the call
has reserved its estimate against every cap, so held calls together can never exceed a cap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from keybrake.core.money import human_usd
from keybrake.core.patterns import first_match
from keybrake.core.policy import Policy

DEFAULT_APPROVAL_WAIT_S = 120  # how long a held call waits when its policy does not say
MAX_APPROVAL_WAIT_S = 3600  # the longest any server lets a call wait (KEYBRAKE_APPROVAL_MAX_WAIT)
# A decision link (Slack's approve / deny buttons) signs these parts: the approval, the action
# and the hold's end, so a link can decide only that call, only that way, only while it waits.
LINK_ACTIONS = ("approve", "deny")


@dataclass(frozen=True)
class ApprovalNeed:
    """Why a call waits (sentences naming the rule and the amounts) and for how long (s)."""

    reasons: tuple[str, ...]
    wait_s: int


def approval_need(
    policy: Policy,
    budget_thresholds: Mapping[str, int],
    method: str,
    path: tuple[str, ...],
    estimate_usd: int,
    max_wait_s: int,
    *,
    unbounded: bool = False,
) -> ApprovalNeed | None:
    """The approval a call needs, or None. `budget_thresholds`: budget id → `approval_above_usd`
    (µUSD) of each budget covering the key; `path`: the vendor's canonical segments; `max_wait_s`:
    the server's KEYBRAKE_APPROVAL_MAX_WAIT, which bounds the policy's `approval_timeout_seconds`.

    `unbounded`: the estimate is no upper bound (an unpriceable call, reserved at the key's
    max_usd_per_call): such a call may move any amount, so it is above every threshold that
    applies, whatever it reserved."""
    reasons: list[str] = []
    if policy.approval_above_usd is not None and (unbounded or estimate_usd > policy.approval_above_usd):
        reasons.append(_above(estimate_usd, "the key's", policy.approval_above_usd, unbounded))
    for budget_id, threshold in sorted(budget_thresholds.items()):
        if unbounded or estimate_usd > threshold:
            reasons.append(_above(estimate_usd, f"budget {budget_id}'s", threshold, unbounded))
    matched = first_match(policy.approval_endpoints or (), method, path)
    if matched is not None:
        reasons.append(f"{method} /{'/'.join(path)} matches the key's approval_endpoints entry {matched.text!r}")
    if not reasons:
        return None
    wait = policy.approval_timeout_seconds or DEFAULT_APPROVAL_WAIT_S
    return ApprovalNeed(tuple(reasons), max(1, min(wait, max_wait_s)))


def approved_headers(approval: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The headers of an answer an approval let go (`approval`: the audit row's, None for a call
    that was not held): `X-Keybrake-Approval-Id` (the approval, or the one whose grant covered
    the call) and `X-Keybrake-Approval-State: approved`."""
    if approval is None:
        return []
    by = str(approval.get("decided_by") or "")
    approval_id = str(approval.get("id") or by.removeprefix("grant:"))
    return [("x-keybrake-approval-id", approval_id), ("x-keybrake-approval-state", "approved")]


def _above(estimate_usd: int, whose: str, threshold: int, unbounded: bool) -> str:
    """Why a call's amount needs approval under `whose` approval_above_usd of `threshold` µUSD."""
    if unbounded:
        return (
            f"it is unpriceable: it may move any amount ({human_usd(estimate_usd)} is only what it reserves), "
            f"so it cannot be shown to be within {whose} approval_above_usd of {human_usd(threshold)}"
        )
    return f"it would move {human_usd(estimate_usd)}, above {whose} approval_above_usd of {human_usd(threshold)}"


def link_signature(secret: bytes, approval_id: str, action: str, expires_at_ms: int) -> str:
    """The signature of a decision link: hex HMAC-SHA256(secret, "<id>.<action>.<expires ms>")."""
    if action not in LINK_ACTIONS:
        raise ValueError(f"not a link action: {action!r}")
    msg = f"{approval_id}.{action}.{expires_at_ms}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def link_valid(secret: bytes, approval_id: str, action: str, expires_at_ms: int, signature: str) -> bool:
    """Whether `signature` signs exactly this approval, action and expiry (constant-time compare)."""
    if action not in LINK_ACTIONS:
        return False
    return hmac.compare_digest(link_signature(secret, approval_id, action, expires_at_ms), signature)


# The path of a decision link: exactly `/v1/approvals/<approval id>/decide` (an approval id is
# `apr_` and a ULID). The admin gate lets GET and POST on it through without an admin token:
# the link's signature is its authority (docs/approvals.md, links).
DECISION_PATH = re.compile(r"/v1/approvals/(apr_[0-9A-HJKMNP-TV-Z]{26})/decide", re.ASCII)
_LINK_SECRET_LABEL = b"keybrake approval links"


def link_secret(pepper: bytes) -> bytes:
    """The key decision links are signed with, derived from the install's pepper: every replica
    of an install signs and checks the same links, and no other secret is reused as it is.

    HKDF-Extract style, the label as the HMAC key and the pepper as the message: never
    HMAC(pepper, data), which is what Keybrake stores and shows elsewhere for data an agent
    chooses (the audit row's `body_hash`, token hashes). A body equal to the label must not
    publish the link key to every reader of the audit log."""
    return hmac.new(_LINK_SECRET_LABEL, pepper, hashlib.sha256).digest()


def decision_path_id(path: str) -> str | None:
    """The approval id of a decision link's path (the decoded path, matched whole), else None."""
    m = DECISION_PATH.fullmatch(path)
    return m.group(1) if m else None


def decision_links(public_url: str, secret: bytes, approval_id: str, expires_at_ms: int) -> dict[str, str]:
    """{"approve": url, "deny": url}: each link decides this approval that way, once, until the
    hold ends (`expires_at_ms`, Unix ms). `public_url` is KEYBRAKE_PUBLIC_URL (no trailing slash)."""
    base = f"{public_url}/v1/approvals/{quote(approval_id, safe='')}/decide"
    return {
        action: f"{base}?action={action}&expires={expires_at_ms}&sig="
        + link_signature(secret, approval_id, action, expires_at_ms)
        for action in LINK_ACTIONS
    }
