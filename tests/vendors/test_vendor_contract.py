"""The vendor contract: the same checks for every registered vendor and for a test vendor defined
in one file (tests/vendors/example_vendor.py), as pure functions — endpoint matching, pricing
classes, scope, redaction and error shape (docs/vendors.md, adding a vendor)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from keybrake.admin.key_models import key_models
from keybrake.core.errors import Denial
from keybrake.core.patterns import parse_pattern
from keybrake.core.policy import Policy
from keybrake.vendors import build_vendors, registry
from keybrake.vendors.base import REDACTED, Vendor, VendorRequest
from tests.vendors import example_vendor
from tests.vendors.contract import BUILTIN_EXAMPLES, Call, VendorExamples

RATES = {"usd": Decimal(1)}
EXAMPLES = {**BUILTIN_EXAMPLES, "acme": example_vendor.EXAMPLES}


@pytest.fixture(scope="module", autouse=True)
def _acme_registered() -> Iterator[None]:
    example_vendor.register()
    yield
    registry.unregister("acme")


def _vendors() -> list[str]:
    return [*(s.name for s in registry.specs() if s.name != "acme"), "acme"]


@pytest.fixture(params=_vendors())
def case(request: pytest.FixtureRequest) -> tuple[Vendor, VendorExamples]:
    name = request.param
    assert name in EXAMPLES, f"vendor {name!r} declares no contract examples (tests/vendors/contract.py)"
    return build_vendors()[name], EXAMPLES[name]


def _parsed(vendor: Vendor, call: Call) -> VendorRequest:
    return vendor.parse(call.request(), vendor.canonical(call.method, call.segments))


def _scoped(vendor: Vendor, call: Call, policy: Policy = Policy()) -> VendorRequest:
    """The pipeline's order: canonical spelling, the one parse, precheck, check_scope."""
    vreq = _parsed(vendor, call)
    vendor.precheck(policy, vreq)
    return vreq.scoped(vendor.check_scope(policy, vreq))


def _at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for name in path:
        doc = doc[name]
    return doc


def test_every_registered_vendor_declares_examples() -> None:
    assert set(_vendors()) == set(EXAMPLES)
    assert "acme" in build_vendors()  # registered from its own module alone


def test_secret_shape(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    sealed = vendor.validate_secret(ex.secret)
    assert sealed.blob and sealed.hint
    with pytest.raises(ValueError):
        vendor.validate_secret(ex.bad_secret)


def test_endpoint_matching(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    for call, canonical in ex.spellings:
        assert vendor.canonical(call.method, call.segments) == canonical
    with pytest.raises(Denial) as exc:
        vendor.canonical(ex.case_variant.method, ex.case_variant.segments)
    assert exc.value.code == "path_invalid"
    assert vendor.pattern_problem(parse_pattern(ex.matches)) is None
    if ex.never_matches is not None:
        assert vendor.pattern_problem(parse_pattern(ex.never_matches))
    for call in ex.guarded:
        path = vendor.canonical(call.method, call.segments)
        assert any(g.matches(call.method, path) for g in vendor.guarded), call
    for call in (ex.priced, ex.unpriceable, *((ex.free,) if ex.free is not None else ())):
        path = vendor.canonical(call.method, call.segments)
        assert not any(g.matches(call.method, path) for g in vendor.guarded), call


def test_pricing_classes(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    if ex.free is not None:
        assert vendor.estimate(_scoped(vendor, ex.free), RATES).pricing == "free"
    priced = vendor.estimate(_scoped(vendor, ex.priced), RATES)
    assert (priced.pricing, priced.amount) == ("priced", ex.priced_usd)
    assert vendor.estimate(_scoped(vendor, ex.unpriceable), RATES).pricing == "unpriceable"
    # A refused answer costs nothing; a free call costs nothing whatever it answers.
    assert vendor.cost(_scoped(vendor, ex.priced), priced, 400, {}, {}, RATES).cost_usd == 0
    if ex.free is not None:
        free = vendor.estimate(_scoped(vendor, ex.free), RATES)
        assert vendor.cost(_scoped(vendor, ex.free), free, 200, {}, {}, RATES).cost_usd == 0


def test_scope(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    _scoped(vendor, ex.in_scope, ex.scope)
    _scoped(vendor, ex.out_of_scope)  # allowed without the scope
    with pytest.raises(Denial) as exc:
        _scoped(vendor, ex.out_of_scope, ex.scope)
    assert exc.value.code == "scope_violation"


def test_redaction(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    call, answer, secrets = ex.secret_answer
    doc = json.loads(json.dumps(answer))
    names = vendor.redact(_parsed(vendor, call), doc)
    text = json.dumps(doc)
    assert names and REDACTED in text
    assert not any(s in text for s in secrets)


def test_every_declared_policy_field_has_an_example(case: tuple[Vendor, VendorExamples]) -> None:
    vendor, ex = case
    spec = registry.spec(vendor.name)
    assert spec is not None
    declared = set(spec.policy_input.model_fields) if spec.policy_input is not None else set()
    assert {e.field for e in ex.policy_fields} == declared
    assert declared <= vendor.policy_fields  # the vendor's keys take them (admin/keys.py refuses others)


def test_policy_fields_are_accepted_refused_with_the_vendors_message_and_enforced(
    case: tuple[Vendor, VendorExamples],
) -> None:
    vendor, ex = case
    key_in = key_models().key_in  # what POST /v1/keys validates, composed from the registered vendors
    assert ex.policy_fields or vendor.name != "acme"
    for e in ex.policy_fields:
        stored = key_in.model_validate(
            {"vendor": vendor.name, "policy": {**e.also, e.field: e.valid}}
        ).policy.to_store()
        assert e.field in stored and vendor.policy_problem(stored) is None
        with pytest.raises(ValidationError) as invalid:
            key_in.model_validate({"vendor": vendor.name, "policy": {**e.also, e.field: e.invalid}})
        (error,) = invalid.value.errors()
        assert error["loc"][:2] == ("policy", e.field) and e.message in error["msg"], error
        if e.call is None:
            continue
        with_field, without = Policy.from_store(stored), Policy.from_store(dict(e.also))
        refused_by, allowed_by = (without, with_field) if e.widens else (with_field, without)
        _scoped(vendor, e.call, allowed_by)
        with pytest.raises(Denial) as refused:
            _scoped(vendor, e.call, refused_by)
        assert refused.value.code == e.code, (e.field, refused.value.message)


def test_a_vendor_registered_after_the_admin_api_is_imported_brings_its_policy_fields() -> None:
    assert "allowed_acme_regions" in key_models().policy_in.model_fields
    assert "allowed_acme_regions" in key_models().policy.model_fields  # rendered in every key
    without = [s for s in registry.specs() if s.name != "acme"]
    assert "allowed_acme_regions" not in key_models(without).policy_in.model_fields
    assert key_models(without) is key_models(list(without))  # composed once per set of vendors


@pytest.mark.parametrize("code", ["scope_violation", "spend_cap_exceeded", "upstream_timeout"])
def test_error_shape(case: tuple[Vendor, VendorExamples], code: str) -> None:
    vendor, ex = case
    denial = Denial(code, f"refused: {code}")
    rendered = vendor.render_denial(denial, {"key_id": "vk_1"})
    body = json.loads(json.dumps(rendered.body))  # JSON as sent
    assert _at(body, ex.error_code_at) == code
    assert _at(body, ex.error_message_at) == f"refused: {code}"
    assert "vk_1" in json.dumps(body)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rendered.headers.items())


def test_a_registered_vendors_settings_are_read_and_checked_like_any_other() -> None:
    from keybrake.config import SettingsError, from_env

    settings = from_env({"KEYBRAKE_ACME_FEE_USD": "0.05"})
    assert settings.vendor_setting("acme", "fee_usd") == Decimal("0.05")
    assert from_env({}).vendor_setting("acme", "fee_usd") == Decimal("0.30")  # the declared default
    acme = build_vendors(settings)["acme"]
    assert acme.estimate(_scoped(acme, EXAMPLES["acme"].priced), RATES).amount == 12_550_000  # $12.50 + $0.05
    with pytest.raises(SettingsError, match="KEYBRAKE_ACME_FEE_USD must be a non-negative decimal"):
        from_env({"KEYBRAKE_ACME_FEE_USD": "-1"})


@pytest.mark.parametrize("name", ["v1", "_keybrake", "healthz", "docs", "openapi.json", "a/b", ""])
def test_reserved_or_unroutable_names_cannot_be_registered(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be a vendor name"):
        registry.register(registry.VendorSpec(name, lambda values: build_vendors()["stripe"]))
    assert name not in build_vendors()
