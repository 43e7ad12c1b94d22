"""Which calls wait for a person (core/approvals.py), against a reference model, and the decision
links' signatures."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.approvals import (
    DEFAULT_APPROVAL_WAIT_S,
    approval_need,
    link_signature,
    link_valid,
)
from keybrake.core.patterns import parse_pattern
from keybrake.core.policy import Policy

usd = st.integers(min_value=0, max_value=10**13)
maybe_usd = st.none() | usd
segments = st.lists(st.sampled_from(["v1", "refunds", "payouts", "charges", "x"]), min_size=1, max_size=3)


@given(
    key_threshold=maybe_usd,
    budgets=st.dictionaries(st.sampled_from(["bud_a", "bud_b", "bud_c"]), usd, max_size=3),
    estimate=usd,
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=segments,
    patterns=st.none() | st.lists(st.sampled_from(["POST /v1/payouts", "POST /v1/refunds/**", "* /v1/x"]), max_size=3),
    wait=st.none() | st.integers(min_value=1, max_value=3600),
    max_wait=st.integers(min_value=1, max_value=3600),
)
def test_a_call_waits_exactly_when_a_threshold_is_passed_or_a_pattern_matches(
    key_threshold: int | None,
    budgets: dict[str, int],
    estimate: int,
    method: str,
    path: list[str],
    patterns: list[str] | None,
    wait: int | None,
    max_wait: int,
) -> None:
    policy = Policy(
        approval_above_usd=key_threshold,
        approval_endpoints=tuple(parse_pattern(p) for p in patterns) if patterns is not None else None,
        approval_timeout_seconds=wait,
    )
    need = approval_need(policy, budgets, method, tuple(path), estimate, max_wait)
    # The reference: strictly above any threshold (the key's or a covering budget's), or a match.
    over = [t for t in [key_threshold, *budgets.values()] if t is not None and estimate > t]
    matched = any(parse_pattern(p).matches(method, tuple(path)) for p in patterns or [])
    assert (need is not None) == (bool(over) or matched)
    if need is not None:
        assert len(need.reasons) == len(over) + int(matched)  # every rule that applies is named
        assert need.wait_s == min(wait or DEFAULT_APPROVAL_WAIT_S, max_wait)


def test_an_estimate_equal_to_the_threshold_does_not_wait() -> None:
    policy = Policy(approval_above_usd=2_000_000_000)
    assert approval_need(policy, {}, "POST", ("v1", "refunds"), 2_000_000_000, 120) is None
    need = approval_need(policy, {}, "POST", ("v1", "refunds"), 2_000_000_001, 120)
    assert need is not None and "above the key's approval_above_usd of $2,000.00" in need.reasons[0]


@given(
    approval_id=st.text(min_size=1, max_size=40),
    action=st.sampled_from(["approve", "deny"]),
    expires=st.integers(min_value=0, max_value=2**53),
    other_id=st.text(min_size=1, max_size=40),
    other_expires=st.integers(min_value=0, max_value=2**53),
)
def test_a_link_signs_only_its_approval_action_and_expiry(
    approval_id: str, action: str, expires: int, other_id: str, other_expires: int
) -> None:
    secret = b"s" * 32
    sig = link_signature(secret, approval_id, action, expires)
    assert link_valid(secret, approval_id, action, expires, sig)
    swapped = "deny" if action == "approve" else "approve"
    assert not link_valid(secret, approval_id, swapped, expires, sig)
    assert not link_valid(b"t" * 32, approval_id, action, expires, sig)
    if other_id != approval_id:
        assert not link_valid(secret, other_id, action, expires, sig)
    if other_expires != expires:
        assert not link_valid(secret, approval_id, action, other_expires, sig)
    assert not link_valid(secret, approval_id, "approve_all", expires, sig)
