"""The reference parsers behave like the parsers they stand for, and the fakes parse like them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.reference_parsers import (
    RackError,
    json_params,
    rack_flat,
    rack_parse,
    stripe_params,
    to_form_params,
    twilio_params,
)
from tests.fakes.resend_server import DEFAULT_API_KEY as RESEND_KEY
from tests.fakes.resend_server import FakeResendThread
from tests.fakes.stripe_server import DEFAULT_SECRET, FakeStripeThread
from tests.fakes.twilio_server import FakeTwilioThread

# Rack's documented results (rack/test/spec_utils.rb, "parse nested query strings correctly" and
# "handles unexpected use of [ and ] in parameter keys as normal characters").
RACK_CASES: list[tuple[str, Any]] = [
    ("foo", {"foo": None}),
    ("foo=", {"foo": ""}),
    ("foo=bar&foo=quux", {"foo": "quux"}),
    ("foo&foo=", {"foo": ""}),
    ("&foo=1&&bar=2", {"foo": "1", "bar": "2"}),
    ("my+weird+field=q1%212%22%27w%245%267%2Fz8%29%3F", {"my weird field": "q1!2\"'w$5&7/z8)?"}),
    ("a=b&pid%3D1234=1023", {"pid=1234": "1023", "a": "b"}),
    ("foo[]", {"foo": [None]}),
    ("foo[]=bar&foo", {"foo": None}),
    ("foo[]=bar&foo[", {"foo": ["bar"], "foo[": None}),
    ("foo[]=bar&foo[]=", {"foo": ["bar", ""]}),
    ("x[y][z][]=1&x[y][z][]=2", {"x": {"y": {"z": ["1", "2"]}}}),
    ("x[y][z]=1&x[y][z]=2", {"x": {"y": {"z": "2"}}}),
    ("x[y][][z]=1&x[y][][w]=2", {"x": {"y": [{"z": "1", "w": "2"}]}}),
    ("x[y][][z]=1&x[y][][z]=2", {"x": {"y": [{"z": "1"}, {"z": "2"}]}}),
    (
        "x[][z][w]=a&x[][y]=1&x[][z][w]=b&x[][y]=2",
        {"x": [{"y": "1", "z": {"w": "a"}}, {"y": "2", "z": {"w": "b"}}]},
    ),
    ("x[][y][][z]=1&x[][y][][w]=2", {"x": [{"y": [{"z": "1", "w": "2"}]}]}),
    ("[]=1&[a]=2&b[=3&c]=4", {"[]": "1", "[a]": "2", "b[": "3", "c]": "4"}),
    ("d[[]=5&e][]=6&f[[]]=7", {"d": {"[": "5"}, "e]": ["6"], "f": {"[": {"]": "7"}}}),
    ("g[h]i=8&j[k]l[m]=9", {"g": {"h": {"i": "8"}}, "j": {"k": {"l[m]": "9"}}}),
    ("l[[[[[[[[]]]]]]]=10", {"l": {"[[[[[[[": {"]]]]]]": "10"}}}),
    # the issue's example: the plain key wins
    ("amount[]=100&amount=99999&currency=usd", {"amount": "99999", "currency": "usd"}),
    ("a=1& b=2", {"a": "1", "b": "2"}),  # `&` followed by spaces is one separator
]


@pytest.mark.parametrize(("text", "expected"), RACK_CASES)
def test_rack_parse_matches_racks_documented_results(text: str, expected: Any) -> None:
    assert rack_parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["x[y]=1&x[y]z=2", "x[y]=1&x[]=1", "x[y]=1&x[y][][w]=2", "amount=1&amount[]=2", "a=%zz", "a" + "[b]" * 32 + "=1"],
)
def test_rack_parse_raises_where_rack_does(text: str) -> None:
    with pytest.raises(RackError):
        rack_parse(text)


def test_stripe_params_merge_body_over_query_shallowly() -> None:
    tree = stripe_params("metadata[a]=1&limit=3", "metadata[b]=2")
    assert tree == {"metadata": {"b": "2"}, "limit": "3"}
    assert rack_flat(rack_parse("items[0][price]=p&items[1][price]=q&expand[]=a")) == {
        "items.price": ["p", "q"],
        "expand": ["a"],
    }
    assert to_form_params(rack_parse("x[][a]=1&y[]=2&m[k]=v")) == {"x[0][a]": ["1"], "y[]": ["2"], "m[k]": ["v"]}


def test_twilio_and_json_references() -> None:
    assert twilio_params("To=a", "To[]=b&MediaUrl=x&MediaUrl=y") == {"To": ["a"], "To[]": ["b"], "MediaUrl": ["x", "y"]}
    assert json_params(b'{"to": "a", "to": "b", "To": "c"}') == {"to": "b", "To": "c"}


def test_fake_stripe_reads_parameters_rack_style() -> None:
    auth = {"Authorization": f"Bearer {DEFAULT_SECRET}", "Content-Type": "application/x-www-form-urlencoded"}
    with FakeStripeThread() as t:
        url = f"{t.base_url}/v1/charges"
        r = httpx.post(url, content=b"amount[]=100&amount=99999&currency=usd&source=tok_visa", headers=auth)
        assert r.status_code == 200 and r.json()["amount"] == 99999
        conflict = httpx.post(url, content=b"amount=100&amount[]=99999&currency=usd", headers=auth)
        assert conflict.status_code == 400 and conflict.json()["error"]["type"] == "invalid_request_error"
        merged = httpx.post(url + "?amount=5", content=b"amount=700&currency=usd&source=tok_visa", headers=auth)
        assert merged.status_code == 200 and merged.json()["amount"] == 700  # the body wins


def test_fake_twilio_reads_a_plain_form_first_value_wins() -> None:
    with FakeTwilioThread() as t:
        sid, token = t.fake.account_sid, t.fake.logins[t.fake.account_sid]
        r = httpx.post(
            f"{t.base_url}/2010-04-01/Accounts/{sid}/Messages.json",
            content=b"To=%2B14155550100&To=%2B882000&To[]=%2B999&From=%2B15005550006&Body=hi",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=(sid, token),
        )
        assert r.status_code == 201, r.text
        assert r.json()["to"] == "+14155550100"


def test_fake_resend_reads_json_like_json_parse_last_duplicate_wins() -> None:
    body = b'{"from": "a@acme.io", "to": "first@example.com", "to": "last@example.com", "To": "x@y.z", "subject": "s"}'
    with FakeResendThread() as t:
        r = httpx.post(
            f"{t.base_url}/emails",
            content=body,
            headers={"Authorization": f"Bearer {RESEND_KEY}", "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert t.fake.emails[r.json()["id"]]["to"] == ["last@example.com"]
