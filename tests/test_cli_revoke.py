"""The kill switch from the command line: `keybrake keys revoke --all` (a key of every vendor)."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from keybrake.cli import main
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def test_revoke_all_from_the_cli_stops_every_vendors_keys(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    twilio = {"account_sid": "AC" + "0" * 32, "auth_token": "f" * 32}
    kb.add_credential(fake_stripe.base_url, name="tw", secret=twilio, vendor="twilio")
    stripe_key = kb.issue({"daily_usd_cap": 5})
    twilio_key = kb.issue({"daily_usd_cap": 5}, vendor="twilio", credential="tw")
    result = CliRunner().invoke(
        main, ["keys", "revoke", "--all", "--reason", "incident 7", "--data-dir", str(kb.settings.data_dir)]
    )
    assert result.exit_code == 0, result.output
    assert '"revoked": 2' in result.output
    r = httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {stripe_key['key']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
    assert kb.key(twilio_key["id"])["status"] == "revoked"
    nothing = CliRunner().invoke(main, ["keys", "revoke", "--data-dir", str(kb.settings.data_dir)])
    assert nothing.exit_code != 0 and "all" in nothing.output  # no filter and no --all: refused, says how
