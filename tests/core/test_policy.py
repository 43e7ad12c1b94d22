from __future__ import annotations

from typing import Any

import pytest

from keybrake.core.errors import Denial
from keybrake.core.params import parse_form
from keybrake.core.policy import ParamRule, Policy, check_param_rules


def policy(rules: dict[str, Any]) -> Policy:
    return Policy.from_store({"param_rules": rules})


@pytest.mark.parametrize(
    ("rules", "body", "ok"),
    [
        ({"currency": {"in": ["usd"]}}, b"currency=usd", True),
        ({"currency": {"in": ["usd"]}}, b"currency=eur", False),
        ({"currency": {"in": ["usd"]}}, b"amount=1", True),
        ({"currency": {"in": ["usd"], "required": True}}, b"amount=1", False),
        ({"amount": {"max": "5000"}}, b"amount=5000", True),
        ({"amount": {"max": "5000"}}, b"amount=5001", False),
        ({"amount": {"max": "5000"}}, b"amount=abc", False),
        ({"amount": {"min": "50"}}, b"amount=49", False),
        ({"description": {"pattern": "order-[0-9]+"}}, b"description=order-12", True),
        ({"description": {"pattern": "order-[0-9]+"}}, b"description=order-12x", False),
        ({"metadata.env": {"not_in": ["prod"]}}, b"metadata[env]=prod", False),
        ({"items.price": {"in": ["p1"]}}, b"items[0][price]=p1&items[1][price]=p2", False),
    ],
)
def test_param_rules(rules: dict[str, Any], body: bytes, ok: bool) -> None:
    params = parse_form(b"", body)
    if ok:
        check_param_rules(policy(rules), params)
    else:
        with pytest.raises(Denial) as info:
            check_param_rules(policy(rules), params)
        assert info.value.code == "param_not_allowed"
        assert "param_rules." in info.value.message


def test_a_rule_holds_whatever_shape_the_value_takes() -> None:
    """Found by the red-team run: `destination[account]=acct_EVIL` passed a rule on `destination`."""
    rule = ParamRule("destination", in_=("acct_GOOD",))
    rule.check(parse_form(b"", b"destination=acct_GOOD"))
    for body in (b"destination[account]=acct_EVIL&destination[amount]=90", b"destination[0]=acct_EVIL"):
        with pytest.raises(Denial) as info:
            rule.check(parse_form(b"", body))
        assert info.value.code == "param_not_allowed"
