"""Contract examples for the built-in Segment definition (src/keybrake/vendors/definitions/segment.toml)."""

from __future__ import annotations

from keybrake.core.policy import Policy
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, js

TRACK = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5}}


def batch(*messages: dict[str, object]) -> Call:
    return js("POST", "/v1/batch", {"batch": list(messages), "sentAt": "2026-11-30T12:00:00Z"})


def track(event: str) -> dict[str, object]:
    return {"type": "track", "userId": "u1", "event": event}


SEGMENT = VendorExamples(
    secret="FakeSegmentWriteKey0123456789abc",
    bad_secret={"write_key": "FakeSegmentWriteKey0123456789abc"},  # the secret is one string
    spellings=(
        (js("POST", "/v1/track", TRACK), ("v1", "track")),
        (batch(track("A")), ("v1", "batch")),
    ),
    case_variant=js("POST", "/v1/Track", TRACK),
    never_matches=None,
    matches="POST /v1/batch",
    guarded=(),  # the Tracking API has no endpoint worth a guard; see docs/sdk-segment.md
    free=None,  # every Tracking API call sends events: none is free
    # Priced at KEYBRAKE_SEGMENT_USD_PER_EVENT per event: $0 unless the operator sets it.
    priced=batch(track("A"), track("B"), {"type": "identify", "userId": "u1"}),
    priced_usd=0,
    unpriceable=js("POST", "/v1/replay", {"batch": [track("A")]}),
    scope=Policy(vendor_data={"allowed_events": ["Order Completed"]}),
    in_scope=js("POST", "/v1/track", TRACK),
    out_of_scope=js("POST", "/v1/track", {**TRACK, "event": "Refund Issued"}),
    secret_answer=(
        batch(track("A")),
        {"success": False, "writeKey": "FakeSegmentWriteKey0123456789abc"},
        ("FakeSegmentWriteKey0123456789abc",),
    ),
    error_code_at=("code",),
    error_message_at=("message",),
    policy_fields=(
        PolicyFieldExample(
            "allowed_events",
            ["Order Completed"],
            [""],
            "is not a value",
            batch(track("Order Completed"), track("Refund Issued")),
        ),
        PolicyFieldExample(
            "allowed_types",
            ["track"],
            [""],
            "is not a value",
            batch(track("Order Completed"), {"type": "alias", "previousId": "a1", "userId": "u1"}),
        ),
    ),
)
