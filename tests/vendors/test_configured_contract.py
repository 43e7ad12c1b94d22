"""The vendor contract (tests/vendors/test_vendor_contract.py) over SMSCo, a vendor defined only
by the file of docs/vendors.md's worked example and registered from a directory: the same checks,
imported and run with this module's `case`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keybrake.vendors import build_vendors, registry
from keybrake.vendors.base import Vendor
from tests.vendors.configured_smsco import EXAMPLES, smsco_installed
from tests.vendors.contract import VendorExamples
from tests.vendors.test_vendor_contract import (  # the contract's checks, collected here for SMSCo
    test_endpoint_matching,
    test_error_shape,
    test_every_declared_policy_field_has_an_example,
    test_policy_fields_are_accepted_refused_with_the_vendors_message_and_enforced,
    test_pricing_classes,
    test_redaction,
    test_scope,
    test_secret_shape,
)

pytestmark = pytest.mark.store_free

__all__ = [
    "test_endpoint_matching",
    "test_error_shape",
    "test_every_declared_policy_field_has_an_example",
    "test_policy_fields_are_accepted_refused_with_the_vendors_message_and_enforced",
    "test_pricing_classes",
    "test_redaction",
    "test_scope",
    "test_secret_shape",
]


@pytest.fixture(scope="module", autouse=True)
def _smsco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with smsco_installed(tmp_path_factory.mktemp("vendors")) as path:
        yield path


@pytest.fixture
def case() -> tuple[Vendor, VendorExamples]:
    return build_vendors()["smsco"], EXAMPLES


def test_smsco_is_registered_from_its_file_alone(_smsco: Path) -> None:
    spec = registry.spec("smsco")
    assert spec is not None and spec.policy_input is not None
    assert [s.env for s in spec.settings] == ["KEYBRAKE_SMSCO_USD_PER_SMS"]
    assert build_vendors()["smsco"].default_base_url == "https://api.smsco.example"
