"""The built-in Segment definition's decisions (src/keybrake/vendors/definitions/segment.toml;
docs/sdk-segment.md): what an event costs and counts, per endpoint, and its price setting."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from keybrake.config import SettingsError, from_env
from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import build_vendors
from keybrake.vendors.base import Estimate, Vendor

pytestmark = pytest.mark.store_free
RATES = {"usd": Decimal(1)}
TYPES = ("track", "identify", "page", "screen", "group", "alias")


def segment(price: str | None = "0.0005") -> Vendor:
    env = {"KEYBRAKE_SEGMENT_USD_PER_EVENT": price} if price is not None else {}
    return build_vendors(from_env(env))["segment"]


def estimate(v: Vendor, path: str, doc: Any, policy: Policy = Policy()) -> Estimate:
    segs = tuple(path.strip("/").split("/"))
    req = ProxyRequest(
        "POST", path.encode(), b"", (("content-type", "application/json"),), json.dumps(doc).encode(), ""
    )
    vreq = v.parse(req, v.canonical("POST", segs))
    v.precheck(policy, vreq)
    return v.estimate(vreq.scoped(v.check_scope(policy, vreq)), RATES)


def test_a_batch_costs_and_counts_each_of_its_events() -> None:
    batch = {"batch": [{"type": t, "userId": "u1", "event": "E"} for t in ("track", "identify", "page")]}
    e = estimate(segment(), "/v1/batch", batch)
    assert (e.pricing, e.amount, e.sends) == ("priced", 1500, 3)
    empty = estimate(segment(), "/v1/batch", {"batch": []})
    assert (empty.amount, empty.sends) == (0, 0)
    with pytest.raises(Denial) as exc:
        estimate(segment(), "/v1/batch", {"batch": {"0": {"type": "track"}}})
    assert exc.value.code == "body_invalid"


@pytest.mark.parametrize("kind", TYPES)
def test_each_single_endpoint_is_one_event(kind: str) -> None:
    e = estimate(segment(), f"/v1/{kind}", {"userId": "u1", "previousId": "a1", "event": "E", "groupId": "g"})
    assert (e.pricing, e.amount, e.sends) == ("priced", 500, 1)


def test_the_price_is_a_setting_defaulting_to_zero_and_checked_like_any_other() -> None:
    assert estimate(segment(None), "/v1/track", {"userId": "u1", "event": "E"}).amount == 0
    assert estimate(segment("0.0000001"), "/v1/track", {"userId": "u1", "event": "E"}).amount == 1  # rounded up
    with pytest.raises(SettingsError, match="KEYBRAKE_SEGMENT_USD_PER_EVENT"):
        from_env({"KEYBRAKE_SEGMENT_USD_PER_EVENT": "-1"})
    with pytest.raises(SettingsError, match="KEYBRAKE_SEGMENT_USD_PER_EVENT"):
        from_env({"KEYBRAKE_SEGMENT_USD_PER_EVENT": "one cent"})


def test_other_paths_are_unpriceable_and_nothing_is_guarded() -> None:
    assert estimate(segment(), "/v1/replay", {"batch": []}).pricing == "unpriceable"
    assert estimate(segment(), "/v1/import", {"batch": []}).pricing == "priced"  # read like /v1/batch
    assert segment().guarded == ()


def test_allowed_events_reads_single_calls_and_batches_and_allowed_types_batches_only() -> None:
    policy = Policy(vendor_data={"allowed_events": ["Signed Up"], "allowed_types": ["track"]})
    estimate(segment(), "/v1/track", {"userId": "u1", "event": "Signed Up"}, policy)
    estimate(segment(), "/v1/identify", {"userId": "u1", "type": "alias"}, policy)  # types: batches only
    for path, doc in [
        ("/v1/track", {"userId": "u1", "event": "Signed up"}),
        ("/v1/batch", {"batch": [{"type": "track", "event": "Signed Up"}, {"type": "track", "event": "X"}]}),
        ("/v1/batch", {"batch": [{"type": "identify", "userId": "u1"}]}),
    ]:
        with pytest.raises(Denial) as exc:
            estimate(segment(), path, doc, policy)
        assert exc.value.code == "scope_violation", (path, doc)
