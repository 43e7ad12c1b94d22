"""First match wins among a definition's endpoints (docs/vendors.md), so an endpoint an earlier one
covers would never be used: a free `POST /v1/*` listed before a priced `POST /v1/payments` made every
payment cost $0 against the caps (found by trying the docs as a new user). Such a definition is
refused, naming both endpoints; generated endpoint lists check that every endpoint of an accepted
definition is the one its own requests reach."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.patterns import first_match, parse_pattern, sample_requests, shadows
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.schema import DefinitionError
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.configured_toml import dumps

pytestmark = pytest.mark.store_free

VALID: dict[str, Any] = tomllib.loads(smsco_toml())


def with_endpoints(*endpoints: dict[str, Any]) -> str:
    doc = copy.deepcopy(VALID)
    doc["endpoint"] = list(endpoints)
    doc.pop("scope", None)
    return dumps(doc)


def test_a_free_wildcard_before_a_priced_endpoint_is_refused() -> None:
    text = with_endpoints(
        {"match": "POST /v1/*", "pricing": "free"},
        {"match": "POST /v1/payments", "pricing": "fixed", "usd": "5"},
    )
    with pytest.raises(DefinitionError) as exc:
        parse_definition(text, "payco.toml", "smsco")
    message = str(exc.value)
    assert "endpoint[1].match" in message and "endpoint[0] 'POST /v1/*' matches it first" in message


def test_specific_endpoints_before_wildcards_are_accepted() -> None:
    text = with_endpoints(
        {"match": "POST /v1/payments", "pricing": "fixed", "usd": "5"},
        {"match": "POST /v1/*", "pricing": "free"},
        {"match": "GET /v1/**", "pricing": "free"},
    )
    assert len(parse_definition(text, "payco.toml", "smsco").endpoints) == 3


SEGMENTS = st.sampled_from(["v1", "payments", "pay_*", "*", "x"])
PATTERNS = st.builds(
    lambda method, segs, rest: f"{method} /" + "/".join([*segs, *(["**"] if rest else [])]),
    st.sampled_from(["GET", "POST", "*", "POST|PUT"]),
    st.lists(SEGMENTS, min_size=1, max_size=3),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PATTERNS, min_size=1, max_size=5, unique=True))
def test_every_endpoint_of_an_accepted_definition_is_reached_by_its_own_requests(texts: list[str]) -> None:
    endpoints = [{"match": t, "pricing": "free"} for t in texts]
    try:
        parse_definition(with_endpoints(*endpoints), "gen.toml", "smsco")
    except DefinitionError as e:
        assert "matches it first" in str(e)
        tried = [parse_pattern(t) for t in texts]
        assert any(shadows(a, b) for i, b in enumerate(tried) for a in tried[:i])
        return
    patterns = tuple(parse_pattern(t) for t in texts)
    for p in patterns:
        for method, path in sample_requests(p):
            assert first_match(patterns, method, path) is p, (p.text, method, path)
