"""A vendor's own policy fields join the admin API's policy input from its declaration alone:
in rank order among the core fields, with their own validators, refused when declared twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from keybrake.admin.policy import ALL_FIELDS, PolicyIn, compose_policy_input
from keybrake.core.policy import CORE_FIELDS, Policy
from keybrake.vendors import registry


class AcmePolicyIn(BaseModel):
    RANKS: ClassVar[Mapping[str, int]] = {"allowed_regions": 75}

    allowed_regions: list[str] | None = Field(default=None, max_length=3)

    @field_validator("allowed_regions")
    @classmethod
    def _upper(cls, v: list[str] | None) -> list[str] | None:
        for region in v or []:
            if not region.isupper():
                raise ValueError(f"{region!r} is not an upper-case region code")
        return v


def test_the_registered_vendors_fields_compose_the_policy_input() -> None:
    declared = {name for s in registry.specs() if s.policy_input is not None for name in s.policy_input.model_fields}
    assert set(ALL_FIELDS) == set(CORE_FIELDS) | declared
    assert ALL_FIELDS.index("account_allowlist") < ALL_FIELDS.index("param_rules")  # by rank


def test_a_new_vendors_fields_render_by_rank_and_keep_their_validators() -> None:
    composed = compose_policy_input([AcmePolicyIn])
    fields = list(composed.model_fields)
    assert fields.index("allowed_endpoints") + 1 == fields.index("allowed_regions")
    assert composed.model_validate({"allowed_regions": ["EU"], "daily_usd_cap": 1}).to_store() == {
        "daily_usd_cap": 1_000_000,
        "allowed_regions": ["EU"],
    }
    for bad, words in (({"allowed_regions": ["eu"]}, "upper-case"), ({"allowed_regions": ["A"] * 4}, "at most 3")):
        with pytest.raises(ValidationError, match=words):
            composed.model_validate(bad)
    with pytest.raises(ValidationError, match="Extra inputs"):
        composed.model_validate({"allowed_region": ["EU"]})
    with pytest.raises(ValidationError, match="hosted product"):
        composed.model_validate({"merchant_allowlist": ["x"]})
    assert "allowed_regions" not in PolicyIn.model_fields  # the server's own input is unchanged


def test_a_field_declared_twice_or_without_rank_is_refused() -> None:
    class Twice(BaseModel):
        RANKS: ClassVar[Mapping[str, int]] = {"daily_usd_cap": 1}
        daily_usd_cap: int | None = None

    class Unranked(BaseModel):
        color: str | None = None

    for model, words in ((Twice, "declared twice"), (Unranked, "no rank")):
        with pytest.raises(ValueError, match=words):
            compose_policy_input([model])


def test_the_vendor_reads_its_fields_typed_once_per_policy() -> None:
    calls: list[Mapping[str, Any]] = []

    def parse(data: Mapping[str, Any]) -> tuple[str, ...]:
        calls.append(data)
        return tuple(data.get("allowed_regions") or ())

    policy = Policy.from_store({"daily_usd_cap": 5, "allowed_regions": ["EU", "US"]})
    assert policy.daily_usd_cap == 5 and dict(policy.vendor_data) == {"allowed_regions": ["EU", "US"]}
    assert policy.vendor_fields(parse) == ("EU", "US") == policy.vendor_fields(parse)
    assert len(calls) == 1
