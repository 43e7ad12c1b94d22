"""`keybrake vendors list`: every registered vendor — built in, or registered by a wrapper before
the command runs (docs/vendors.md, adding a vendor) — with its base URL, upstream hosts and settings."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.vendors import registry
from tests.vendors import example_vendor

pytestmark = pytest.mark.store_free  # no store: runs once, not again on PostgreSQL


@pytest.fixture
def acme_registered() -> Iterator[None]:
    """Acme registered as a wrapper around `keybrake` registers it, then removed again."""
    example_vendor.register()
    try:
        yield
    finally:
        registry.unregister("acme")


def test_vendors_list_json_names_the_built_in_vendors_and_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYBRAKE_RESEND_RATE_USD", "0.002")
    monkeypatch.delenv("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", raising=False)
    result = CliRunner().invoke(main, ["vendors", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"stripe", "twilio", "resend"} <= set(rows)
    assert rows["stripe"]["base_url"] == "https://api.stripe.com"
    assert rows["stripe"]["upstream_hosts"] == ["api.stripe.com"]
    assert rows["stripe"]["settings"] == []
    assert rows["resend"]["settings"] == [
        {"env": "KEYBRAKE_RESEND_RATE_USD", "kind": "decimal", "default": 0.0004, "value": "0.002"}
    ]
    interval = {s["env"]: s for s in rows["twilio"]["settings"]}["KEYBRAKE_TWILIO_RECONCILE_INTERVAL"]
    assert interval == {"env": "KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "kind": "number", "default": 60.0, "value": None}


@pytest.mark.usefixtures("acme_registered")
def test_a_vendor_registered_by_a_wrapper_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYBRAKE_ACME_FEE_USD", "0.05")
    as_json = CliRunner().invoke(main, ["vendors", "list", "--json"])
    assert as_json.exit_code == 0, as_json.output
    acme = {row["name"]: row for row in json.loads(as_json.stdout)}["acme"]
    assert acme == {
        "name": "acme",
        "title": "acme",
        "source": "registered in Python",
        "base_url": "https://api.acme.example",
        "upstream_hosts": ["api.acme.example"],
        "settings": [{"env": "KEYBRAKE_ACME_FEE_USD", "kind": "decimal", "default": 0.30, "value": "0.05"}],
    }
    listed = CliRunner().invoke(main, ["vendors", "list"])
    assert listed.exit_code == 0, listed.output
    header, *lines = listed.stdout.splitlines()
    assert header.split() == ["name", "title", "source", "base_url", "upstream_hosts", "settings"]
    row = ["acme", "acme", "registered", "in", "Python", "https://api.acme.example", "api.acme.example"]
    assert [*row, "KEYBRAKE_ACME_FEE_USD=0.05"] in [line.split() for line in lines]
