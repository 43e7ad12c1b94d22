"""`keybrake keys issue` validates a policy with the vendors' own policy fields (the models the
admin API composes from the vendor registry), and refuses a bad field naming it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from keybrake.cli import main
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def _issue(kb: KeybrakeThread, *args: str) -> tuple[int, str]:
    """Exit code, and standard output when it succeeded (the key's JSON) or everything printed."""
    result = CliRunner().invoke(main, ["keys", "issue", *args, "--data-dir", str(kb.settings.data_dir)])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_keys_issue_takes_every_vendors_policy_fields(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    twilio = {"account_sid": "AC" + "0" * 32, "auth_token": "f" * 32}
    kb.add_credential(fake_stripe.base_url, name="tw", secret=twilio, vendor="twilio")
    code, out = _issue(
        kb, "--vendor", "stripe", "--daily-usd-cap", "5", "--customer", "cus_1",
        "--policy", json.dumps({"account_allowlist": ["acct_1"], "daily_usd_cap": 5}),
    )  # fmt: skip
    assert code == 0, out
    stripe_key = json.loads(out)
    policy = kb.key(stripe_key["id"])["policy"]
    assert policy["account_allowlist"] == ["acct_1"]

    code, out = _issue(
        kb, "--vendor", "twilio", "--credential", "tw",
        "--policy", json.dumps({"allowed_to_prefixes": ["+1"], "max_call_seconds": 60, "daily_usd_cap": 5}),
    )  # fmt: skip
    assert code == 0, out
    twilio_key = json.loads(out)
    policy = kb.key(twilio_key["id"])["policy"]
    assert (policy["allowed_to_prefixes"], policy["max_call_seconds"]) == (["+1"], 60)


def test_keys_issue_refuses_a_bad_vendor_field_naming_it(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    twilio = {"account_sid": "AC" + "0" * 32, "auth_token": "f" * 32}
    kb.add_credential(fake_stripe.base_url, name="tw", secret=twilio, vendor="twilio")
    code, out = _issue(
        kb, "--vendor", "twilio", "--credential", "tw",
        "--policy", json.dumps({"allowed_to_prefixes": ["not-a-prefix"], "daily_usd_cap": 5}),
    )  # fmt: skip
    assert code != 0
    assert "allowed_to_prefixes" in out and "not-a-prefix" in out, out
